"use strict";
// The review page's map (Leaflet, embedded in the server; no CDN): the run's before and
// after imagery as XYZ tiles with a swipe (卷帘) between them, the patches as outlines
// coloured by status on a canvas (thousands stay responsive), the land-use parcels with
// their DLBM labels on demand, a scale bar and the pointer's CGCS2000 lon/lat.
//
// It talks to app.js through DOM events only, so the queue code does not depend on it:
//   "lw:patch"      (from app.js)  a patch was opened: show it (detail = the patch JSON)
//   "lw:verdict"    (from app.js)  a verdict was saved: recolour (detail = {id, status})
//   "lw:map-select" (to app.js)    a patch was clicked on the map (detail = {id})
// Leaflet's own keyboard handling is off: the arrow keys stay the queue's.
(function () {
  var COLOURS = { unreviewed: "#ffd400", legal: "#2fbf5b", illegal: "#ff3b30", other: "#4aa3ff" };
  // Patches are fetched for the view plus this share of it on each side.
  var PAD = 0.25;
  var MAX_FIT_ZOOM = 18;
  var map, before, after, patches, landuse, renderer, divider, coords;
  var runId = null, currentId = null, swipeShare = 0.5, loadSeq = 0, landuseSeq = 0, lastError = "";

  // The map's own texts, so the shared dictionary in i18n.js stays untouched.
  var TEXTS = {
    "zh-CN": { before: "前时相", after: "后时相", patches: "图斑", landuse: "地类图斑", no_imagery: "影像无法显示",
      not_georeferenced: "本批次影像无地理坐标,无法在地图上显示", not_in_queue: "该图斑不在当前筛选的列表中",
      token_label: "此令牌用于哪台电脑或软件 (如 QGIS 办公室电脑)?", token_made: "WMTS 地址 (仅显示一次,请复制到 QGIS):",
      field: "实地核查", v_legal: "合法", v_illegal: "违法", v_other: "其他", v_unchanged: "实地未变化" },
    en: { before: "Before", after: "After", patches: "Patches", landuse: "Land-use parcels", no_imagery: "imagery unavailable",
      not_georeferenced: "this run's imagery has no georeferencing; it cannot be shown on the map",
      not_in_queue: "that patch is not in the queue with the current filter",
      token_label: "Where will this token be used (e.g. QGIS office PC)?",
      token_made: "WMTS address (shown once; paste it into QGIS):", field: "Field check",
      v_legal: "legal", v_illegal: "illegal", v_other: "other", v_unchanged: "no change on the ground" }
  };

  function $(id) { return document.getElementById(id); }
  function tr(k) {
    var lang = window.currentLang ? window.currentLang() : "zh-CN";
    return (TEXTS[lang] || TEXTS["zh-CN"])[k] || k;
  }

  function tileUrl(date) { return "/tiles/" + runId + "/" + date + "/{z}/{x}/{y}.png"; }

  function styleOf(f) {
    var current = f.properties.id === currentId;
    return {
      color: current ? "#ffffff" : COLOURS[f.properties.status] || COLOURS.unreviewed,
      weight: current ? 4 : 2,
      dashArray: f.properties.needs_rereview ? "6 4" : null,
      fill: true,
      fillOpacity: current ? 0.05 : 0.12
    };
  }

  function showMsg(text) {
    var m = $("map-msg");
    if (m) m.textContent = text || "";
  }

  // Clips the after layer to the right of the divider, in the map pane's coordinates.
  function updateSwipe() {
    if (!map || !after) return;
    var size = map.getSize();
    var nw = map.containerPointToLayerPoint([0, 0]);
    var se = map.containerPointToLayerPoint(size);
    var x = nw.x + size.x * swipeShare;
    var c = after.getContainer();
    if (c) c.style.clip = "rect(" + [nw.y, se.x, se.y, x].join("px,") + "px)";
    divider.style.left = Math.round(size.x * swipeShare) + "px";
    $("map").dataset.swipe = String(Math.round(swipeShare * 100));
  }

  function setRun(id) {
    if (id === runId) return;
    runId = id;
    lastError = "";
    showMsg("");
    before.setUrl(tileUrl("before"));
    after.setUrl(tileUrl("after"));
    if (!map.hasLayer(before)) { before.addTo(map); after.addTo(map); }
    updateSwipe();
    loadLandUse();
  }

  // A tile that failed: ask once for the server's message (moved imagery, no run.json …).
  function onTileError(ev) {
    var url = ev.tile && ev.tile.src;
    if (!url || lastError) return;
    lastError = "…";
    fetch(url, { credentials: "same-origin" }).then(function (r) { return r.json(); })
      .then(function (j) { lastError = (j && j.error) || "?"; showMsg(tr("no_imagery") + ": " + lastError); })
      .catch(function () { lastError = "?"; showMsg(tr("no_imagery")); });
  }

  function bboxParam(bounds) {
    return [bounds.getWest(), bounds.getSouth(), bounds.getEast(), bounds.getNorth()]
      .map(function (v) { return v.toFixed(6); }).join(",");
  }

  function loadPatches() {
    var seq = ++loadSeq;
    var b = map.getBounds().pad(PAD);
    return fetch("/api/map/patches?bbox=" + bboxParam(b), { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(new Error(r.status)); })
      .then(function (fc) {
        if (seq !== loadSeq) return;
        patches.clearLayers();
        patches.addData(fc);
        $("map").dataset.patches = String(fc.features.length);
        if (currentId !== null) bringCurrentToFront();
      })
      .catch(function () { /* the next move tries again */ });
  }

  function bringCurrentToFront() {
    patches.eachLayer(function (l) {
      if (l.feature.properties.id === currentId && l.bringToFront) l.bringToFront();
    });
  }

  function loadLandUse() {
    if (!landuse || !map.hasLayer(landuse) || runId === null) return;
    var seq = ++landuseSeq;
    var url = "/api/map/layers/" + runId + "/landuse?bbox=" + bboxParam(map.getBounds().pad(PAD));
    fetch(url, { credentials: "same-origin" })
      .then(function (r) { return r.json().then(function (j) { return r.ok ? j : Promise.reject(new Error(j.error)); }); })
      .then(function (fc) {
        if (seq !== landuseSeq) return;
        landuse.clearLayers();
        landuse.addData(fc);
        labelLandUse();
      })
      .catch(function (e) { showMsg(tr("landuse") + ": " + e.message); });
  }

  // DLBM labels only when asked for and zoomed in far enough to read them.
  function labelLandUse() {
    var on = $("map-labels") && $("map-labels").checked && map.getZoom() >= 15;
    landuse.eachLayer(function (l) {
      l.unbindTooltip();
      var p = l.feature.properties;
      if (on && p.DLBM) {
        l.bindTooltip(String(p.DLBM) + (p.DLMC ? " " + String(p.DLMC) : ""),
          { permanent: true, direction: "center", className: "dlbm-label" });
      }
    });
  }

  // The pointer's position: CGCS2000 lon/lat (EPSG:4490; equal to WGS 84 at map scale).
  function showCoords(ev) {
    var ll = ev.latlng;
    coords.textContent = "CGCS2000 " + ll.lng.toFixed(6) + "°E, " + ll.lat.toFixed(6) + "°N";
  }

  function onPatch(ev) {
    var d = ev.detail;
    if (!map || !d) return;
    currentId = d.id;
    showEvidence(d.id);
    if (d.crs === "pixel" || typeof d.run_id !== "number") {
      showMsg(tr("not_georeferenced"));
      return;
    }
    setRun(d.run_id);
    var shape = L.geoJSON(d.geometry);
    var bounds = shape.getBounds();
    if (bounds.isValid()) map.fitBounds(bounds.pad(1.5), { maxZoom: MAX_FIT_ZOOM, animate: false });
    patches.setStyle(styleOf);
    bringCurrentToFront();
    loadPatches();
  }

  // The patch's field-check results (photos, notes, field verdicts), as text and images.
  function showEvidence(id) {
    var box = $("field-evidence");
    while (box.firstChild) box.removeChild(box.firstChild);
    box.hidden = true;
    fetch("/api/patches/" + id + "/evidence", { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : { items: [] }; })
      .then(function (j) {
        if (currentId !== id || !j.items.length) return;
        var h = document.createElement("h3");
        h.textContent = tr("field");
        box.appendChild(h);
        j.items.forEach(function (it) {
          var e = it.evidence;
          var fig = document.createElement("figure");
          fig.className = "evidence";
          if (it.photo_url) {
            var img = document.createElement("img");
            img.src = it.photo_url;
            img.alt = e.photo_name;
            fig.appendChild(img);
          }
          var cap = document.createElement("figcaption");
          var where = e.position ? " · " + e.position[0].toFixed(6) + "°E " + e.position[1].toFixed(6) + "°N" : "";
          cap.textContent = (e.verdict ? tr("v_" + e.verdict) + " · " : "") + e.taken_at + where + (e.note ? " · " + e.note : "");
          fig.appendChild(cap);
          box.appendChild(fig);
        });
        box.hidden = false;
      })
      .catch(function () { /* evidence is optional */ });
  }

  function onVerdict(ev) {
    if (!patches) return;
    patches.eachLayer(function (l) {
      if (l.feature.properties.id === ev.detail.id) {
        l.feature.properties.status = ev.detail.status;
        l.feature.properties.needs_rereview = false;
        l.setStyle(styleOf(l.feature));
      }
    });
  }

  // A map token for QGIS/ArcGIS: the WMTS address is shown once, to copy.
  function newMapToken() {
    var label = window.prompt(tr("token_label"), "QGIS");
    if (!label) return;
    fetch("/api/me", { credentials: "same-origin" }).then(function (r) { return r.json(); })
      .then(function (me) {
        return fetch("/api/me/map-tokens", {
          method: "POST", credentials: "same-origin",
          headers: { "Content-Type": "application/json", "X-CSRF-Token": me.csrf_token },
          body: JSON.stringify({ label: label })
        });
      })
      .then(function (r) { return r.json().then(function (j) { return r.ok ? j : Promise.reject(new Error(j.error)); }); })
      .then(function (j) {
        var out = $("map-token-url");
        out.hidden = false;
        out.value = j.capabilities_url;
        out.select();
        showMsg(tr("token_made"));
      })
      .catch(function (e) { showMsg(e.message); });
  }

  function init() {
    var box = $("map");
    if (!box || !window.L) return;
    renderer = L.canvas({ padding: PAD, tolerance: 3 });
    map = L.map(box, { keyboard: false, maxZoom: 21, preferCanvas: true, attributionControl: false });
    map.setView([30, 110], 4);
    // The after date in its own pane above the before one, so the swipe can clip it alone.
    // Both above the default tile pane (200) and below the outlines (overlay pane, 400).
    map.createPane("before").style.zIndex = 250;
    map.createPane("after").style.zIndex = 260;
    before = L.tileLayer("", { maxZoom: 21, pane: "before" });
    after = L.tileLayer("", { maxZoom: 21, pane: "after" });
    before.on("tileerror", onTileError);
    after.on("tileerror", onTileError);
    patches = L.geoJSON(null, {
      renderer: renderer,
      style: styleOf,
      onEachFeature: function (f, layer) {
        layer.on("click", function () {
          document.dispatchEvent(new CustomEvent("lw:map-select", { detail: { id: f.properties.id } }));
        });
      }
    }).addTo(map);
    landuse = L.geoJSON(null, { renderer: renderer, style: { color: "#c7a0ff", weight: 1, fill: false } });
    var overlays = {};
    overlays[tr("before")] = before;
    overlays[tr("after")] = after;
    overlays[tr("patches")] = patches;
    overlays[tr("landuse")] = landuse;
    L.control.layers(null, overlays, { collapsed: true }).addTo(map);
    L.control.scale({ imperial: false }).addTo(map);
    divider = L.DomUtil.create("div", "map-divider", box);
    coords = L.DomUtil.create("div", "map-coords", box);
    map.on("mousemove", showCoords);
    map.on("move zoom resize", updateSwipe);
    map.on("moveend", function () { loadPatches(); loadLandUse(); });
    map.on("zoomend", function () { if (map.hasLayer(landuse)) labelLandUse(); });
    map.on("overlayadd", function (e) { if (e.layer === landuse) loadLandUse(); updateSwipe(); });
    $("map-swipe").addEventListener("input", function (ev) {
      swipeShare = Number(ev.target.value) / 100;
      updateSwipe();
    });
    $("map-labels").addEventListener("change", labelLandUse);
    $("map-token").addEventListener("click", newMapToken);
    document.addEventListener("lw:patch", onPatch);
    document.addEventListener("lw:verdict", onVerdict);
    document.addEventListener("lw:not-in-queue", function () { showMsg(tr("not_in_queue")); });
    box.dataset.ready = "1";
    window.landwatchMap = map; // for the browser test and for debugging
  }

  init();
})();
