/* Vigie: what every page shares — the API token and role, French formatting. No build step. */
(function () {
  "use strict";
  var V = (window.Vigie = window.Vigie || {});
  var KEY = "vigie.token";
  V.ROLES = ["public", "city", "analyst", "planner", "crisis_cell", "admin"];
  /* Days a fan chart shows before the last observation, by frequency. */
  V.WINDOW_DAYS = {daily: 182, weekly: 364, quarterly: 3650};
  V.ROLE_LABELS = {public: "Accès public", city: "Ville", analyst: "Analyste", planner: "Planificateur",
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
          var err = new Error("erreur " + r.status);
          err.status = r.status; err.body = body; throw err;
        }
        return body;
      });
    });
  };

  /* Page data fetched as soon as common.js runs (first of the deferred scripts), while the
     chart library is still being compiled: the page names it in <body data-prefetch>. */
  var prefetched = {};
  V.load = function (url) {
    var hit = prefetched[url];
    if (hit) { delete prefetched[url]; return hit; }
    return V.ready.then(function () { return V.fetchJSON(url); });
  };

  /* The page's first chart: drawn before anything else heavy (other charts wait for it), its
     time kept in Vigie.firstChartAt (bench/dashboard.py reads it). V.firstChart resolves once
     it is drawn, or once the page knows it will draw none (V.noChart). */
  var firstDone;
  V.firstChart = new Promise(function (resolve) { firstDone = resolve; });
  V.markFirstChart = function () {
    V.firstChartAt = V.firstChartAt || performance.now();
    firstDone();
  };
  V.noFirstChart = function () { V.noChart = !V.firstChartAt; firstDone(); };
  /* fn(item, i) for each item in turn, each after the previous one's promise and a pause that
     lets the browser paint (one chart appears, then the next). */
  V.sequence = function (items, fn) {
    return items.reduce(function (done, item, i) {
      return done.then(function () {
        return new Promise(function (resolve) { setTimeout(resolve, 0); });
      }).then(function () { return fn(item, i); }).catch(function (err) {
        console.error(err);  // one chart failing does not stop the others (and tests see it)
      });
    }, Promise.resolve());
  };

  /* The API's errors in French: from the error's stable code and details (the codes' sentences
     come from the server, service/dashboard/messages.py), never the API's English message. */
  var codes = {};
  (function () {
    var el = document.getElementById("error-codes");
    try { codes = el ? JSON.parse(el.textContent) : {}; } catch (e) { codes = {}; }
  })();
  var SCHEMA_FR = [
    [/^(.*) is less than the minimum of (.*)$/, "$1 est inférieur au minimum ($2)"],
    [/^(.*) is greater than the maximum of (.*)$/, "$1 dépasse le maximum ($2)"],
    [/^(.*) is less than or equal to the minimum of (.*)$/, "$1 doit être supérieur à $2"],
    [/^'(.*)' is a required property$/, "le champ « $1 » est obligatoire"],
    [/^unknown field; allowed fields: \[(.*)\]$/, "champ inconnu (champs permis : $1)"],
    [/^(.*) is not of type (.*)$/, "$1 n'est pas du type attendu ($2)"],
    [/^(.*) does not match .*$/, "$1 n'a pas le format attendu"],
    [/^(.*) is not one of \[(.*)\]$/, "$1 n'est pas une valeur permise (valeurs : $2)"],
    [/^(.*) is not a valid date \(YYYY-MM-DD\)$/, "$1 n'est pas une date valide (AAAA-MM-JJ)"],
    [/^(.*) is before start (.*)$/, "la fin $1 précède le début $2"],
    [/^give either end or duration_days, not both$/, "donnez end ou duration_days, pas les deux"],
    [/^only a relaxation lifts measures$/, "seule une levée de mesures (relaxation) peut lever des mesures"]
  ];
  /* "horizon_days: -3 is less than the minimum of 1" → "champ « horizon_days » : -3 est …" */
  V.schemaErrorFr = function (text) {
    var m = /^([^:]+): (.*)$/.exec(String(text)), field = m ? m[1] : "", what = m ? m[2] : String(text);
    for (var i = 0; i < SCHEMA_FR.length; i++) {
      if (SCHEMA_FR[i][0].test(what)) {
        what = what.replace(SCHEMA_FR[i][0], SCHEMA_FR[i][1]);
        return (field && field !== "(top level)" ? "champ « " + field + " » : " : "") + what;
      }
    }
    return (field && field !== "(top level)" ? "champ « " + field + " » : " : "") +
      "valeur refusée (voir la description des champs dans scenarios/README.md)";
  };
  V.errorFr = function (err) {
    var body = (err && err.body) || {}, code = body.code, details = body.details || {};
    if (code && codes[code]) {
      var text = codes[code];
      if ((code === "forbidden" || code === "authentication_required") && details.required_role) {
        text = "accès refusé : il faut un jeton « " +
          (V.ROLE_LABELS[details.required_role] || details.required_role).toLowerCase() + " » ou supérieur";
      }
      if (code === "aggregated_only" && details.scoped && codes.aggregated_only_scoped) {
        text = codes.aggregated_only_scoped;
      }
      return text;
    }
    if (err && err.status === 404) { return codes.not_found || "élément introuvable"; }
    if (err && err.status >= 500) { return codes.internal_error || "erreur du service"; }
    if (err && err.status) { return "le service a refusé la demande (code " + err.status + ")"; }
    return "le service ne répond pas (réseau ou serveur arrêté)";
  };
  /* "pas encore de prévision…" → "Pas encore de prévision…." */
  V.sentence = function (text) {
    text = String(text || "");
    if (!text) { return ""; }
    text = text.charAt(0).toUpperCase() + text.slice(1);
    return /[.!?…]$/.test(text) ? text : text + ".";
  };

  /* Models in French (the registry's names are identifiers). */
  V.MODEL_FR = {baseline: "méthode naïve", ensemble: "ensemble Vigie", ets: "lissage exponentiel (ETS)",
                sarimax: "SARIMAX", prophet: "Prophet", gbm: "gradient boosting",
                growth: "croissance amortie"};
  V.modelLabel = function (model, version) {
    return "modèle « " + (V.MODEL_FR[model] || model) + " »" + (version ? " version " + version : "");
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

  (function () {
    var url = document.body && document.body.dataset.prefetch;
    if (url) { prefetched[url] = V.ready.then(function () { return V.fetchJSON(url); }); }
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
