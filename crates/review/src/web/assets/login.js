"use strict";
// Login page: translate the labels and show the error sent back as ?error=1.
(function () {
  applyI18n(document);
  setupLangSelect(document.getElementById("lang-select"), function () { applyI18n(document); });
  if (new URLSearchParams(location.search).has("error")) {
    document.getElementById("login-error").hidden = false;
  }
})();
