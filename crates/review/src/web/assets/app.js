"use strict";
// The review page. Every piece of data is put on the page with textContent or element
// attributes set from JS, never as HTML, so markup inside patch attributes shows as text.
(function () {
  var SUBTYPES = {
    legal: ["农转用", "增减挂钩", "其他"],
    other: ["设施农用地", "临时用地", "农村道路", "实地未变化", "其他"]
  };
  var SUBTYPE_KEYS = ["a", "b", "c", "d", "e"];
  var STATUSES = ["unreviewed", "legal", "illegal", "other"];
  // Queue lines (and outlines) per request; the server allows up to 1000.
  var PAGE_SIZE = 200;
  // Pages loaded at most while looking for a linked patch (#patch=ID) further down.
  var MAX_SEEK_PAGES = 100;

  // The queue is loaded a page at a time, in id order: `items` are the lines loaded so far,
  // `nextAfter` the cursor of the next page (null: none), `query` the filter they were
  // loaded with and `generation` counts filter changes, so a page that arrives after the
  // filter changed is dropped. The overview shows the outlines of the loaded pages.
  var state = {
    me: null, items: [], index: -1, detail: null, facets: null, counts: {},
    choice: null, subtype: "", overview: { crs: "lonlat", patches: [] }, busy: false,
    query: "", nextAfter: null, total: 0, loading: null, generation: 0
  };

  function $(id) { return document.getElementById(id); }

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  // fetch wrapper: JSON in and out, CSRF header on every state change, 401 -> login.
  function api(path, method, body) {
    var init = { method: method || "GET", headers: {}, credentials: "same-origin" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    if (init.method !== "GET" && state.me) init.headers["X-CSRF-Token"] = state.me.csrf_token;
    return fetch(path, init).then(function (r) {
      if (r.status === 401) { location.href = "/login"; throw new Error("login required"); }
      return r.json().catch(function () { return null; }).then(function (data) {
        if (!r.ok) throw new Error((data && data.error) || ("HTTP " + r.status));
        return data;
      });
    });
  }

  function statusLabel(s) { return t("st_" + s); }
  function changeTypeLabel(c) { var k = "ct_" + c; var v = t(k); return v === k ? c : v; }

  // ---- filters and queue -------------------------------------------------------------

  function fillSelect(select, values, labeler) {
    var keep = select.value;
    clear(select);
    var all = el("option", t("all")); all.value = ""; select.appendChild(all);
    values.forEach(function (v) {
      var o = el("option", labeler ? labeler(v) : (v === "" ? "—" : v)); o.value = v; select.appendChild(o);
    });
    select.value = keep;
  }

  function renderFilters() {
    var f = state.facets || { xzqdm: [], category: [], change_type: [] };
    fillSelect($("f-xzqdm"), f.xzqdm);
    fillSelect($("f-category"), f.category);
    fillSelect($("f-change_type"), f.change_type, changeTypeLabel);
    fillSelect($("f-status"), STATUSES, statusLabel);
  }

  function filterQuery() {
    var params = new URLSearchParams();
    new FormData($("filters")).forEach(function (v, k) { if (v !== "") params.append(k, v); });
    return params.toString();
  }

  function renderCounts(counts) {
    state.counts = counts;
    var box = $("counts");
    clear(box);
    STATUSES.forEach(function (s) {
      var c = el("span", statusLabel(s) + " " + (counts[s] || 0), "count st-" + s);
      c.dataset.status = s;
      box.appendChild(c);
    });
    box.appendChild(el("span", t("total") + " " + (counts.total || 0), "count"));
  }

  function queueLine(item, i) {
    var li = el("li", null, "q-item st-" + item.status + (i === state.index ? " current" : ""));
    li.dataset.id = String(item.id);
    li.dataset.status = item.status;
    if (item.needs_rereview) li.dataset.rereview = "1";
    li.appendChild(el("span", item.jcbh || item.patch_id, "q-title"));
    li.appendChild(el("span", statusLabel(item.status), "badge st-" + item.status));
    if (item.needs_rereview) li.appendChild(el("span", t("needs_rereview"), "badge rereview"));
    if (item.suppressed) {
      var sup = el("span", t("suppressed"), "badge suppressed");
      sup.title = item.suppressed_reason || "";
      li.appendChild(sup);
    }
    var conf = typeof item.change_confidence === "number" ? t("confidence") + " " + item.change_confidence.toFixed(2) : "";
    var meta = [item.xzqmc || item.xzqdm, item.tblx || changeTypeLabel(item.change_type),
      Math.round(item.area_m2) + " m²", item.after_date, conf].filter(Boolean).join(" · ");
    li.appendChild(el("div", meta, "q-meta"));
    li.addEventListener("click", function () { select(i); });
    return li;
  }

  // The line after the loaded ones: "load more" while there are further pages.
  function renderMore() {
    var old = $("queue-more-line");
    if (old) old.parentNode.removeChild(old);
    $("queue-count").textContent = "(" + state.total + ")";
    var ul = $("queue");
    if (state.items.length === 0) {
      if (!ul.querySelector(".empty")) ul.appendChild(el("li", t("no_patches"), "empty"));
      return;
    }
    if (state.nextAfter === null) return;
    var li = el("li", null, "more");
    li.id = "queue-more-line";
    var b = el("button", t("load_more") + " (" + state.items.length + " / " + state.total + ")");
    b.type = "button";
    b.id = "queue-more";
    b.addEventListener("click", function () { loadMore().catch(showLoadError); });
    li.appendChild(b);
    ul.appendChild(li);
  }

  function renderQueue() {
    var ul = $("queue");
    clear(ul);
    appendQueueLines(0);
  }

  function appendQueueLines(start) {
    var ul = $("queue");
    var empty = ul.querySelector(".empty");
    if (empty) ul.removeChild(empty);
    var more = $("queue-more-line");
    if (more) ul.removeChild(more);
    for (var i = start; i < state.items.length; i++) ul.appendChild(queueLine(state.items[i], i));
    renderMore();
  }

  function showLoadError(e) { showMsg("verdict-msg", e.message, true); }

  function pageQuery(after) {
    return (state.query ? state.query + "&" : "") + "limit=" + PAGE_SIZE + (after ? "&after=" + after : "");
  }

  function addPage(q, o) {
    var start = state.items.length;
    state.items = state.items.concat(q.patches);
    state.nextAfter = (q.next_after === null || q.next_after === undefined) ? null : q.next_after;
    state.total = q.total;
    renderCounts(q.counts);
    state.overview.crs = o.crs;
    state.overview.patches = state.overview.patches.concat(o.patches);
    appendQueueLines(start);
    renderOverview();
  }

  // Loads the next page of lines and outlines; resolves to whether one was added.
  function loadMore() {
    if (state.nextAfter === null) return Promise.resolve(false);
    if (!state.loading) {
      var generation = state.generation;
      var query = pageQuery(state.nextAfter);
      var loading = Promise.all([api("/api/patches?" + query), api("/api/overview?" + query)])
        .then(function (r) {
          if (generation !== state.generation) return false;
          addPage(r[0], r[1]);
          return true;
        });
      state.loading = loading;
      var done = function () { if (state.loading === loading) state.loading = null; };
      loading.then(done, done);
    }
    return state.loading;
  }

  // The index of patch `id`, loading further pages while it may lie on one of them.
  function seek(id, pages) {
    var idx = state.items.findIndex(function (it) { return it.id === id; });
    var last = state.items.length ? state.items[state.items.length - 1].id : 0;
    if (idx >= 0 || id === null || state.nextAfter === null || id < last || pages >= MAX_SEEK_PAGES) {
      return Promise.resolve(idx);
    }
    return loadMore().then(function () { return seek(id, pages + 1); });
  }

  // (Re)loads the queue from its first page with the current filter; opens patch `keepId`
  // when it is in the list, else the first.
  function loadQueue(keepId) {
    state.generation += 1;
    state.query = filterQuery();
    state.items = [];
    state.index = -1;
    state.loading = null;
    state.nextAfter = 0;
    state.overview = { crs: state.overview.crs, patches: [] };
    clear($("queue"));
    return loadMore().then(function () { return seek(keepId, 0); }).then(function (idx) {
      if (idx < 0 && state.items.length > 0) idx = 0;
      if (idx >= 0) return select(idx);
      showEmpty();
    });
  }

  // The counts (and total) again, after a verdict changed them.
  function refreshCounts() {
    var query = (state.query ? state.query + "&" : "") + "limit=1";
    return api("/api/patches?" + query).then(function (q) {
      state.total = q.total;
      renderCounts(q.counts);
      renderMore();
    });
  }

  // Shows a new verdict of patch `id` in its queue line and outline, without reloading.
  function markVerdict(id, current) {
    state.items.forEach(function (item, i) {
      if (item.id !== id) return;
      item.status = current.status;
      item.subtype = current.subtype;
      item.needs_rereview = false;
      var li = document.querySelector('#queue li[data-id="' + id + '"]');
      if (li) li.parentNode.replaceChild(queueLine(item, i), li);
    });
    state.overview.patches.forEach(function (p) {
      if (p.id === id) { p.status = current.status; p.needs_rereview = false; }
    });
    renderOverview();
    document.dispatchEvent(new CustomEvent("lw:verdict", { detail: { id: id, status: current.status } }));
  }

  // ---- patch view ---------------------------------------------------------------------

  function showEmpty() {
    state.detail = null;
    $("patch").hidden = true;
    $("empty").hidden = false;
    renderOverview();
  }

  // Opens line `i`; past the loaded lines, loads the next page first (so j keeps going).
  function select(i) {
    if (i < 0) return Promise.resolve();
    if (i >= state.items.length) {
      if (state.nextAfter === null) return Promise.resolve();
      return loadMore().then(function (added) { return added && i < state.items.length ? select(i) : undefined; })
        .catch(showLoadError);
    }
    state.index = i;
    var id = state.items[i].id;
    // Until this patch's detail arrives the pane still shows the previous patch: no verdict
    // may be chosen or saved meanwhile (a quick key would judge the patch left behind).
    state.detail = null;
    state.choice = null; state.subtype = "";
    $("patch").classList.add("loading");
    history.replaceState(null, "", "#patch=" + id);
    document.querySelectorAll("#queue li.current").forEach(function (li) { li.classList.remove("current"); });
    var li = document.querySelector('#queue li[data-id="' + id + '"]');
    if (li) { li.classList.add("current"); li.scrollIntoView({ block: "nearest" }); }
    return api("/api/patches/" + id).then(function (d) {
      if (!state.items[state.index] || state.items[state.index].id !== d.id) return;
      state.detail = d;
      renderPatch();
    }).catch(function (e) { showMsg("verdict-msg", e.message, true); });
  }

  function setChip(img, url) {
    img.classList.remove("broken");
    img.alt = "";
    if (url) { img.src = url; } else { img.removeAttribute("src"); img.classList.add("broken"); img.alt = t("no_chip"); }
  }

  function renderPatch() {
    var d = state.detail;
    $("empty").hidden = true;
    $("patch").hidden = false;
    $("patch").classList.remove("loading");
    $("patch").dataset.id = d.id;
    $("patch-title").textContent = (d.properties.JCBH || d.patch_id) + " (" + d.patch_id + ")";
    var badge = $("patch-status");
    badge.textContent = statusLabel(d.current.status) + (d.current.subtype ? " · " + subtypeLabel(d.current.subtype) : "");
    badge.className = "badge st-" + d.current.status;
    badge.dataset.status = d.current.status;
    $("patch-rereview").hidden = !d.needs_rereview;
    ["before", "after"].forEach(function (w) {
      setChip($("chip-" + w), d.chips[w]);
      setChip($("swipe-" + w), d.chips[w]);
    });
    renderAttributes(d.properties);
    renderHistory(d.history, d.events || []);
    state.choice = null; state.subtype = "";
    $("note").value = d.current.status === "unreviewed" ? "" : d.current.note;
    renderChoice();
    var admin = state.me.role === "admin";
    $("reopen").hidden = !(admin && d.current.status !== "unreviewed");
    showMsg("verdict-msg", "");
    markOverviewCurrent();
    document.dispatchEvent(new CustomEvent("lw:patch", { detail: d })); // map.js
  }

  function renderAttributes(props) {
    var tbody = $("attrs").querySelector("tbody");
    clear(tbody);
    Object.keys(props).sort().forEach(function (k) {
      var v = props[k];
      var text = (v !== null && typeof v === "object") ? JSON.stringify(v) : (v === null ? "" : String(v));
      var tr = el("tr");
      tr.appendChild(el("th", k));
      var td = el("td", text);
      td.dataset.field = k;
      tr.appendChild(td);
      tbody.appendChild(tr);
    });
  }

  function eventText(e) {
    if (e.kind !== "outline_changed") return e.at + " · " + t("system") + " · " + e.kind;
    var d = e.detail || {};
    var parts = [];
    if (typeof d.iou === "number") parts.push("IoU " + d.iou.toFixed(2));
    if (typeof d.area_change === "number") {
      parts.push(t("area") + " " + (d.area_change >= 0 ? "+" : "") + Math.round(d.area_change * 100) + "%");
    }
    return e.at + " · " + t("system") + " · " + t("ev_outline_changed") + (parts.length ? " (" + parts.join(", ") + ")" : "");
  }

  // Verdicts and events (re-review flags), newest first.
  function renderHistory(rows, events) {
    var ol = $("history");
    clear(ol);
    var lines = rows.map(function (h) {
      return { at: h.at, cls: "", text: h.at + " · " + h.user + " · " + statusLabel(h.old_status) + " → " +
        statusLabel(h.new_status) + (h.subtype ? " (" + subtypeLabel(h.subtype) + ")" : "") + (h.note ? " · " + h.note : "") };
    }).concat(events.map(function (e) { return { at: e.at, cls: "event", text: eventText(e) }; }));
    if (lines.length === 0) ol.appendChild(el("li", t("no_history"), "empty"));
    // Stable sort: same-second rows keep verdicts-then-events order, reversed below.
    lines.map(function (l, i) { return [l, i]; })
      .sort(function (a, b) { return a[0].at < b[0].at ? -1 : a[0].at > b[0].at ? 1 : a[1] - b[1]; })
      .reverse()
      .forEach(function (p) { ol.appendChild(el("li", p[0].text, p[0].cls || undefined)); });
  }

  // ---- verdicts -----------------------------------------------------------------------

  function choose(status) {
    if (!state.detail) return;
    state.choice = status;
    state.subtype = "";
    renderChoice();
  }

  function chooseSubtype(i) {
    var list = SUBTYPES[state.choice];
    if (!list || i >= list.length) return;
    state.subtype = list[i];
    renderChoice();
  }

  function renderChoice() {
    document.querySelectorAll(".v-btn").forEach(function (b) {
      b.classList.toggle("chosen", b.dataset.status === state.choice);
    });
    var list = SUBTYPES[state.choice];
    $("subtypes").hidden = !list;
    var box = $("subtype-options");
    clear(box);
    if (!list) return;
    $("subtype-label").textContent = t(state.choice === "legal" ? "proof_type" : "other_type") + ":";
    list.forEach(function (s, i) {
      var b = el("button", null, "st-btn" + (s === state.subtype ? " chosen" : ""));
      b.type = "button";
      b.dataset.subtype = s;
      b.appendChild(el("kbd", SUBTYPE_KEYS[i]));
      b.appendChild(document.createTextNode(" " + subtypeLabel(s)));
      b.addEventListener("click", function () { chooseSubtype(i); });
      box.appendChild(b);
    });
  }

  function showMsg(id, text, isError) {
    var p = $(id);
    p.textContent = text || "";
    p.classList.toggle("error", !!isError);
  }

  function save() {
    if (!state.detail || !state.choice || state.busy) return;
    if (SUBTYPES[state.choice] && !state.subtype) { showMsg("verdict-msg", t("choose_subtype"), true); return; }
    var id = state.detail.id;
    var index = state.index;
    state.busy = true;
    api("/api/patches/" + id + "/verdict", "POST",
      { status: state.choice, subtype: state.subtype, note: $("note").value })
      .then(function (r) {
        showMsg("verdict-msg", t("saved"));
        markVerdict(id, r.current);
        refreshCounts().catch(function () { /* counts catch up with the next page */ });
        var hasNext = index + 1 < state.items.length || state.nextAfter !== null;
        return select(hasNext ? index + 1 : index);
      })
      .catch(function (e) { showMsg("verdict-msg", e.message, true); })
      .then(function () { state.busy = false; });
  }

  function reopen() {
    if (!state.detail) return;
    var id = state.detail.id;
    var note = window.prompt(t("reopen_note"), "") || "";
    api("/api/patches/" + id + "/reopen", "POST", { note: note })
      .then(function (r) {
        markVerdict(id, r.current);
        return refreshCounts().then(function () { return select(state.index); });
      })
      .catch(function (e) { showMsg("verdict-msg", e.message, true); });
  }

  // ---- swipe --------------------------------------------------------------------------

  function setView(swipe) {
    $("chips-side").hidden = swipe;
    $("chips-swipe").hidden = !swipe;
    $("view-side").classList.toggle("chosen", !swipe);
    $("view-swipe").classList.toggle("chosen", swipe);
  }

  function updateSwipe() {
    var pct = Number($("swipe-range").value);
    $("swipe-after").style.clipPath = "inset(0 0 0 " + pct + "%)";
  }

  // ---- overview (SVG of every outline, no map tiles) ---------------------------------

  function rings(geometry) {
    if (!geometry) return [];
    if (geometry.type === "Polygon") return geometry.coordinates;
    if (geometry.type === "MultiPolygon") return [].concat.apply([], geometry.coordinates);
    return [];
  }

  function renderOverview() {
    var box = $("overview");
    clear(box);
    var o = state.overview;
    if (o.patches.length === 0) return;
    var minx = Infinity, miny = Infinity, maxx = -Infinity, maxy = -Infinity;
    o.patches.forEach(function (p) {
      rings(p.geometry).forEach(function (r) { r.forEach(function (c) {
        minx = Math.min(minx, c[0]); maxx = Math.max(maxx, c[0]);
        miny = Math.min(miny, c[1]); maxy = Math.max(maxy, c[1]);
      }); });
    });
    var W = 300, H = 220, pad = 6;
    var sx = (maxx - minx) || 1, sy = (maxy - miny) || 1;
    var scale = Math.min((W - 2 * pad) / sx, (H - 2 * pad) / sy);
    var flip = o.crs !== "pixel"; // lon/lat: north up; pixel rows grow downwards already
    function px(c) {
      var x = pad + (c[0] - minx) * scale;
      var y = flip ? H - pad - (c[1] - miny) * scale : pad + (c[1] - miny) * scale;
      return x.toFixed(1) + "," + y.toFixed(1);
    }
    var NS = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(NS, "svg");
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    svg.setAttribute("class", "overview-svg");
    o.patches.forEach(function (p) {
      var d = rings(p.geometry).map(function (r) { return "M" + r.map(px).join("L") + "Z"; }).join("");
      var path = document.createElementNS(NS, "path");
      path.setAttribute("d", d);
      path.setAttribute("class", "ov st-" + p.status);
      path.dataset.id = String(p.id);
      var title = document.createElementNS(NS, "title");
      title.textContent = String(p.id);
      path.appendChild(title);
      // A dot at the first vertex keeps patches far smaller than the view visible.
      var first = rings(p.geometry)[0];
      var dot = document.createElementNS(NS, "circle");
      if (first && first.length) {
        var xy = px(first[0]).split(",");
        dot.setAttribute("cx", xy[0]); dot.setAttribute("cy", xy[1]); dot.setAttribute("r", "3");
      }
      dot.setAttribute("class", "ov-dot st-" + p.status);
      dot.dataset.id = String(p.id);
      [path, dot].forEach(function (shape) {
        shape.addEventListener("click", function () {
          var i = state.items.findIndex(function (it) { return it.id === p.id; });
          if (i >= 0) select(i);
        });
        svg.appendChild(shape);
      });
    });
    box.appendChild(svg);
    markOverviewCurrent();
  }

  // Highlights the open patch's outline (cheaper than drawing them all again).
  function markOverviewCurrent() {
    document.querySelectorAll("#overview .current").forEach(function (n) { n.classList.remove("current"); });
    if (!state.detail) return;
    document.querySelectorAll('#overview [data-id="' + state.detail.id + '"]').forEach(function (n) {
      n.classList.add("current");
    });
  }

  // ---- admin --------------------------------------------------------------------------

  function adminAction(promise) {
    return promise.then(function () { showMsg("admin-msg", t("saved")); return loadUsers(); })
      .catch(function (e) { showMsg("admin-msg", e.message, true); });
  }

  // The action buttons of another user's row: enable/disable, reset password, remove.
  function userActions(u) {
    var td = el("td");
    var toggle = el("button", t(u.disabled ? "enable" : "disable"));
    toggle.type = "button";
    toggle.addEventListener("click", function () {
      adminAction(api("/api/admin/users/" + u.id + "/disabled", "POST", { disabled: !u.disabled }));
    });
    var reset = el("button", t("reset_password"));
    reset.type = "button";
    var pw = el("input");
    pw.type = "password";
    pw.autocomplete = "new-password";
    pw.minLength = 8;
    pw.hidden = true;
    pw.className = "reset-password";
    pw.setAttribute("aria-label", t("new_password"));
    reset.addEventListener("click", function () {
      if (pw.hidden) { pw.hidden = false; pw.focus(); return; }
      adminAction(api("/api/admin/users/" + u.id + "/password", "POST", { password: pw.value }));
    });
    var remove = el("button", t("remove"));
    remove.type = "button";
    remove.addEventListener("click", function () {
      if (!window.confirm(t("confirm_remove").replace("{name}", u.name))) return;
      adminAction(api("/api/admin/users/" + u.id, "DELETE"));
    });
    [toggle, reset, pw, remove].forEach(function (n) { td.appendChild(n); });
    return td;
  }

  function loadUsers() {
    return api("/api/admin/users").then(function (r) {
      var tbody = $("users-table").querySelector("tbody");
      clear(tbody);
      r.users.forEach(function (u) {
        var tr = el("tr");
        tr.dataset.id = String(u.id);
        tr.appendChild(el("td", u.name));
        tr.appendChild(el("td", t(u.role === "admin" ? "admin_role" : "reviewer")));
        tr.appendChild(el("td", t(u.removed ? "removed" : u.disabled ? "disabled" : "active")));
        tr.appendChild(u.id !== state.me.id && !u.removed ? userActions(u) : el("td"));
        tbody.appendChild(tr);
      });
    }).catch(function (e) { showMsg("admin-msg", e.message, true); });
  }

  function addUser(ev) {
    ev.preventDefault();
    var body = { name: $("new-user-name").value, role: $("new-user-role").value, password: $("new-user-password").value };
    api("/api/admin/users", "POST", body).then(function () {
      $("add-user").reset();
      showMsg("admin-msg", t("saved"));
      return loadUsers();
    }).catch(function (e) { showMsg("admin-msg", e.message, true); });
  }

  function changeOwnPassword(ev) {
    ev.preventDefault();
    var body = { current_password: $("current-password").value, new_password: $("new-password").value };
    api("/api/me/password", "POST", body).then(function () {
      $("change-password").reset();
      showMsg("password-msg", t("password_changed"));
    }).catch(function (e) { showMsg("password-msg", e.message, true); });
  }

  // ---- keyboard -----------------------------------------------------------------------

  function onKey(ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) {
      if (ev.key === "Enter" && ev.target.id === "note") { ev.preventDefault(); save(); }
      return;
    }
    var tag = ev.target.tagName;
    if (tag === "TEXTAREA" || (tag === "INPUT" && ev.target.type !== "range") || tag === "SELECT") {
      if (ev.key === "Escape") ev.target.blur();
      return;
    }
    if (tag === "INPUT" && (ev.key === "ArrowLeft" || ev.key === "ArrowRight")) return; // the swipe slider
    var k = ev.key;
    var handled = true;
    if (k === "j" || k === "ArrowDown" || k === "ArrowRight") select(state.index + 1);
    else if (k === "k" || k === "ArrowUp" || k === "ArrowLeft") select(state.index - 1);
    else if (k === "1") choose("legal");
    else if (k === "2") choose("illegal");
    else if (k === "3") choose("other");
    else if (SUBTYPE_KEYS.indexOf(k) >= 0) chooseSubtype(SUBTYPE_KEYS.indexOf(k));
    else if (k === "n") $("note").focus();
    else if (k === "s") setView($("chips-swipe").hidden);
    else if (k === "Enter") save();
    else handled = false;
    if (handled) ev.preventDefault();
  }

  // ---- start --------------------------------------------------------------------------

  function relabel() {
    applyI18n(document);
    renderFilters();
    renderCounts(state.counts);
    renderQueue();
    renderOverview();
    if (state.detail) renderPatch();
  }

  function init() {
    applyI18n(document);
    setupLangSelect($("lang-select"), relabel);
    document.addEventListener("keydown", onKey);
    $("filters").addEventListener("submit", function (ev) { ev.preventDefault(); state.index = 0; loadQueue(null); });
    $("f-reset").addEventListener("click", function () { $("filters").reset(); state.index = 0; loadQueue(null); });
    document.querySelectorAll(".v-btn").forEach(function (b) {
      b.addEventListener("click", function () { choose(b.dataset.status); });
    });
    $("save").addEventListener("click", save);
    $("reopen").addEventListener("click", reopen);
    $("view-side").addEventListener("click", function () { setView(false); });
    $("view-swipe").addEventListener("click", function () { setView(true); });
    $("swipe-range").addEventListener("input", updateSwipe);
    ["chip-before", "chip-after", "swipe-before", "swipe-after"].forEach(function (id) {
      $(id).addEventListener("error", function () { $(id).classList.add("broken"); $(id).alt = t("no_chip"); });
    });
    $("logout").addEventListener("click", function () {
      api("/logout", "POST").then(function () { location.href = "/login"; })
        .catch(function () { location.href = "/login"; });
    });
    $("admin-toggle").addEventListener("click", function () {
      $("admin-panel").hidden = !$("admin-panel").hidden;
      if (!$("admin-panel").hidden) loadUsers();
    });
    $("add-user").addEventListener("submit", addUser);
    $("password-toggle").addEventListener("click", function () {
      $("password-panel").hidden = !$("password-panel").hidden;
      if (!$("password-panel").hidden) $("current-password").focus();
    });
    $("change-password").addEventListener("submit", changeOwnPassword);
    // Near the end of the loaded lines, load the next page.
    $("queue").addEventListener("scroll", function () {
      var q = $("queue");
      if (q.scrollTop + q.clientHeight >= q.scrollHeight - 120) loadMore().catch(showLoadError);
    });
    // A patch clicked on the map (map.js): open it in the queue.
    document.addEventListener("lw:map-select", function (ev) {
      seek(ev.detail.id, 0).then(function (idx) {
        if (idx >= 0) return select(idx);
        document.dispatchEvent(new CustomEvent("lw:not-in-queue"));
      }).catch(showLoadError);
    });
    setView(false);
    updateSwipe();
    var m = /^#patch=(\d+)$/.exec(location.hash);
    var wanted = m ? Number(m[1]) : null;
    api("/api/me").then(function (me) {
      state.me = me;
      $("me").textContent = me.name;
      $("admin-toggle").hidden = me.role !== "admin";
      return api("/api/facets");
    }).then(function (f) {
      state.facets = f;
      renderFilters();
      return loadQueue(wanted);
    })
      .then(function () { document.body.dataset.ready = "1"; })
      .catch(function (e) { showMsg("verdict-msg", e.message, true); });
  }

  init();
})();
