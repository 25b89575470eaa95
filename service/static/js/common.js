/* Vigie: what every page shares — the API token and role, French formatting. No build step. */
(function () {
  "use strict";
  var V = (window.Vigie = window.Vigie || {});
  var KEY = "vigie.token";
  V.ROLES = ["public", "analyst", "planner", "crisis_cell", "admin"];
  V.ROLE_LABELS = {public: "Accès public", analyst: "Analyste", planner: "Planificateur",
                   crisis_cell: "Cellule de crise", admin: "Administrateur"};
  V.role = "public";

  V.token = function () { return sessionStorage.getItem(KEY); };

  /* fetch JSON with the stored token; throws an Error carrying status and body on failure. */
  V.fetchJSON = function (url, options) {
    options = options || {};
    var headers = Object.assign({"Accept": "application/json"}, options.headers || {});
    var token = V.token();
    if (token) { headers["Authorization"] = "Bearer " + token; }
    if (options.body && typeof options.body !== "string") {
      headers["Content-Type"] = "application/json";
      options = Object.assign({}, options, {body: JSON.stringify(options.body)});
    }
    return fetch(url, Object.assign({}, options, {headers: headers})).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (body) {
        if (!r.ok) {
          var err = new Error(body.message || ("erreur " + r.status));
          err.status = r.status; err.body = body; throw err;
        }
        return body;
      });
    });
  };

  V.has = function (role) { return V.ROLES.indexOf(V.role) >= V.ROLES.indexOf(role); };

  /* French formatting: 1 234,5 ; 12 % ; 25/10/2020. */
  var fmtCache = {};
  V.num = function (value, digits) {
    if (value === null || value === undefined || Number.isNaN(value)) { return "–"; }
    digits = digits || 0;
    if (!fmtCache[digits]) {
      fmtCache[digits] = new Intl.NumberFormat("fr-FR", {minimumFractionDigits: digits,
                                                         maximumFractionDigits: digits});
    }
    return fmtCache[digits].format(value);
  };
  V.pct = function (p) {
    if (p === null || p === undefined) { return "–"; }
    if (p < 0.01) { return "moins de 1 %"; }
    if (p > 0.99) { return "plus de 99 %"; }
    return V.num(100 * p) + " %";
  };
  V.date = function (iso) {
    if (!iso) { return "–"; }
    var m = /^(\d{4})-(\d{2})-(\d{2})/.exec(iso);
    return m ? m[3] + "/" + m[2] + "/" + m[1] : iso;
  };
  V.vintageDate = function (vintageId) {
    /* vintage ids start with their issue time: 20261128T185847Z-… */
    var m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})/.exec(vintageId || "");
    return m ? m[3] + "/" + m[2] + "/" + m[1] + " " + m[4] + " h " + m[5] + " UTC" : (vintageId || "–");
  };
  V.esc = function (text) {
    return String(text === null || text === undefined ? "" : text).replace(/[&<>"']/g, function (c) {
      return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c];
    });
  };

  function showRole() {
    var badge = document.getElementById("role-badge");
    if (badge) {
      badge.textContent = V.ROLE_LABELS[V.role] || V.role;
      badge.dataset.role = V.role;
    }
    document.body.dataset.role = V.role;
  }

  /* Resolves with the role once the stored token (if any) has been checked. */
  V.ready = (function () {
    if (!V.token()) { showRole(); return Promise.resolve(V.role); }
    return V.fetchJSON("/tableau/moi").then(function (me) {
      V.role = me.role; V.user = me.name; showRole(); return V.role;
    }).catch(function () {
      sessionStorage.removeItem(KEY); V.role = "public"; showRole();
      var msg = document.getElementById("token-msg");
      if (msg) { msg.textContent = "Jeton refusé : accès public."; }
      return V.role;
    });
  })();

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("token-form");
    if (!form) { return; }
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var value = document.getElementById("token-input").value.trim();
      var msg = document.getElementById("token-msg");
      if (!value) { msg.textContent = "Collez un jeton."; return; }
      sessionStorage.setItem(KEY, value);
      V.fetchJSON("/tableau/moi").then(function () { location.reload(); }).catch(function () {
        sessionStorage.removeItem(KEY);
        msg.textContent = "Jeton inconnu ou révoqué.";
      });
    });
    document.getElementById("token-clear").addEventListener("click", function () {
      sessionStorage.removeItem(KEY); location.reload();
    });
  });
})();
