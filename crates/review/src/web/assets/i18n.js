"use strict";
// Interface texts: zh-CN (default, the users are county staff) and English.
// Data values (county names, categories) are shown as they are; the fixed vocabularies
// (statuses, change types, verdict subtypes) are translated here.
var I18N = {
  "zh-CN": {
    app_title: "图斑核查", user_name: "用户名", password: "密码", log_in: "登录", log_out: "退出",
    login_failed: "用户名或密码错误", language: "语言",
    filters: "筛选", county: "行政区 (XZQDM)", category: "类别", change_type: "变化类型", status: "状态",
    date_from: "起始日期", date_to: "截止日期", min_area: "最小面积 (m²)", max_area: "最大面积 (m²)",
    all: "全部", apply: "应用", reset: "重置", queue: "图斑列表", total: "合计", no_patches: "没有符合条件的图斑",
    st_unreviewed: "未核", st_legal: "合法", st_illegal: "违法", st_other: "其他",
    before: "前时相", after: "后时相", side_by_side: "并排", swipe: "卷帘", attributes: "属性",
    field: "字段", value: "值", verdict: "判定", proof_type: "合法依据", other_type: "其他类型",
    note: "备注", save: "保存 (Enter)", saved: "已保存", reopen: "重新打开", history: "审核记录",
    choose_subtype: "请先选择类型 (a–e)", no_chip: "无法显示影像", overview: "图斑分布",
    export: "导出", shortcuts: "快捷键", admin: "用户管理", users: "用户", role: "角色",
    add_user: "添加用户", disable: "停用", enable: "启用", disabled: "已停用", active: "正常",
    reviewer: "核查员", admin_role: "管理员", decided_by: "判定人", no_history: "暂无记录",
    select_patch: "请选择图斑", reopen_note: "重新打开的原因",
    k_next: "下一个", k_prev: "上一个", k_legal: "合法", k_illegal: "违法", k_other: "其他",
    k_subtype: "选择类型", k_note: "填写备注 (Esc 返回)", k_save: "保存并前往下一个", k_swipe: "并排/卷帘切换",
    ct_building: "新增建筑", ct_hardened: "推填土/硬化", ct_pond: "坑塘", ct_orchard_forest: "园地/林地",
    ct_greenhouse: "大棚", ct_other: "其他",
    load_more: "加载更多", needs_rereview: "需复核", only_rereview: "仅看需复核",
    min_confidence: "最低变化置信度", sort: "排序", sort_id: "编号", sort_conf_desc: "置信度从高到低",
    sort_conf_asc: "置信度从低到高", suppressed_filter: "模型抑制", suppressed_hide: "隐藏被抑制的",
    suppressed_only: "仅看被抑制的", suppressed_include: "全部显示", suppressed: "已抑制", confidence: "置信度",
    ev_outline_changed: "轮廓已变化，需复核", system: "系统", area: "面积",
    change_password: "修改密码", current_password: "当前密码", new_password: "新密码",
    save_password: "保存密码", password_changed: "密码已修改，其他登录已退出",
    reset_password: "重置密码", remove: "删除", removed: "已删除",
    confirm_remove: "删除用户 {name}？其审核记录会保留。"
  },
  "en": {
    app_title: "Patch review", user_name: "User name", password: "Password", log_in: "Log in", log_out: "Log out",
    login_failed: "Wrong user name or password", language: "Language",
    filters: "Filters", county: "County (XZQDM)", category: "Category", change_type: "Change type", status: "Status",
    date_from: "From date", date_to: "To date", min_area: "Min area (m²)", max_area: "Max area (m²)",
    all: "All", apply: "Apply", reset: "Reset", queue: "Patches", total: "Total", no_patches: "No patches match",
    st_unreviewed: "Unreviewed", st_legal: "Legal", st_illegal: "Illegal", st_other: "Other",
    before: "Before", after: "After", side_by_side: "Side by side", swipe: "Swipe", attributes: "Attributes",
    field: "Field", value: "Value", verdict: "Verdict", proof_type: "Proof type", other_type: "Other type",
    note: "Note", save: "Save (Enter)", saved: "Saved", reopen: "Reopen", history: "History",
    choose_subtype: "Choose a type first (a–e)", no_chip: "Image unavailable", overview: "Overview",
    export: "Export", shortcuts: "Shortcuts", admin: "Users", users: "Users", role: "Role",
    add_user: "Add user", disable: "Disable", enable: "Enable", disabled: "disabled", active: "active",
    reviewer: "reviewer", admin_role: "admin", decided_by: "Decided by", no_history: "No history yet",
    select_patch: "Select a patch", reopen_note: "Reason for reopening",
    k_next: "next", k_prev: "previous", k_legal: "legal", k_illegal: "illegal", k_other: "other",
    k_subtype: "choose type", k_note: "write a note (Esc to leave)", k_save: "save and go to next", k_swipe: "side by side / swipe",
    ct_building: "new building", ct_hardened: "fill / hardened", ct_pond: "pond", ct_orchard_forest: "orchard / forest",
    ct_greenhouse: "greenhouse", ct_other: "other",
    load_more: "Load more", needs_rereview: "Re-review", only_rereview: "Only needing re-review",
    min_confidence: "Min change confidence", sort: "Order", sort_id: "By id", sort_conf_desc: "Confidence, high first",
    sort_conf_asc: "Confidence, low first", suppressed_filter: "Suppressed by model", suppressed_hide: "Hide suppressed",
    suppressed_only: "Only suppressed", suppressed_include: "Show all", suppressed: "Suppressed", confidence: "confidence",
    ev_outline_changed: "outline changed; decide again", system: "system", area: "area",
    change_password: "Change password", current_password: "Current password", new_password: "New password",
    save_password: "Save password", password_changed: "Password changed; your other sessions have ended",
    reset_password: "Reset password", remove: "Remove", removed: "removed",
    confirm_remove: "Remove user {name}? Their verdicts stay in the history."
  }
};

// Verdict subtypes are stored in Chinese (the reporting vocabulary); English glosses:
var SUBTYPE_EN = {
  "农转用": "farmland conversion approval", "增减挂钩": "land-swap quota (增减挂钩)", "其他": "other",
  "设施农用地": "agricultural facility land", "临时用地": "temporary use", "农村道路": "rural road",
  "实地未变化": "no change on the ground"
};

function currentLang() {
  var l = null;
  try { l = window.localStorage.getItem("lw-lang"); } catch (e) { l = null; }
  return I18N[l] ? l : "zh-CN";
}

function t(key) {
  var d = I18N[currentLang()];
  if (Object.prototype.hasOwnProperty.call(d, key)) return d[key];
  return Object.prototype.hasOwnProperty.call(I18N["zh-CN"], key) ? I18N["zh-CN"][key] : key;
}

function subtypeLabel(s) {
  if (currentLang() === "en" && Object.prototype.hasOwnProperty.call(SUBTYPE_EN, s)) return SUBTYPE_EN[s];
  return s;
}

function applyI18n(root) {
  root.querySelectorAll("[data-i18n]").forEach(function (el) { el.textContent = t(el.dataset.i18n); });
  document.documentElement.lang = currentLang();
}

function setupLangSelect(select, onChange) {
  select.value = currentLang();
  select.addEventListener("change", function () {
    try { window.localStorage.setItem("lw-lang", select.value); } catch (e) { /* private mode */ }
    onChange();
  });
}
