/* Vue d'ensemble: colour the tile map by alert level, draw the national curve. */
(function () {
  "use strict";
  var V = window.Vigie;
  var names = JSON.parse(document.getElementById("dep-names").textContent || "{}");
  var LEVEL_FR = {red: "rouge", orange: "orange", yellow: "jaune", green: "vert", unknown: "inconnu"};
  var ORDER = {red: 0, orange: 1, yellow: 2, green: 3, unknown: 4};

  /* Each tile keeps one sentence per colouring; the title and the hover line follow the mode. */
  var texts = {capacity: {}, risk: {}};
  function mode() { return document.getElementById("map").dataset.mode; }

  function showTitles() {
    var m = mode();
    document.querySelectorAll("#map .tile").forEach(function (tile) {
      var code = tile.dataset.code;
      tile.querySelector("title").textContent = texts[m][code] || code;
    });
  }

  function paintMap(alerts) {
    var items = alerts.available ? alerts.items : {};
    var info = document.getElementById("tile-info");
    document.querySelectorAll("#map .tile").forEach(function (tile) {
      var code = tile.dataset.code, a = items[code];
      var level = a ? a.level : "unknown";
      tile.dataset.level = level;
      var text = a ? a.message : (names[code] || code) + " : pas d'alerte calculée.";
      texts.capacity[code] = code + " " + (names[code] || "") + " — niveau " + LEVEL_FR[level] +
        ". " + text;
      var show = function () { info.textContent = texts[mode()][code] || text; };
      tile.addEventListener("mouseenter", show);
      tile.addEventListener("focus", show);
    });
    showTitles();
    var meta = document.getElementById("alert-meta");
    if (alerts.available) {
      var counts = {};
      Object.values(items).forEach(function (a) { counts[a.level] = (counts[a.level] || 0) + 1; });
      meta.textContent = "Prévision du " + V.date(alerts.forecast_date) + " (données : version " +
        V.vintageDate(alerts.vintage_id) + "). Départements en rouge : " + (counts.red || 0) +
        ", orange : " + (counts.orange || 0) + ", jaune : " + (counts.yellow || 0) +
        ", vert : " + (counts.green || 0) + ", sans alerte calculée : " + (counts.unknown || 0) + ".";
    } else {
      meta.textContent = "Alertes indisponibles : " + alerts.reason;
    }
    var rows = Object.keys(items).sort(function (a, b) {
      return (ORDER[items[a].level] - ORDER[items[b].level]) || a.localeCompare(b);
    }).map(function (code) {
      var a = items[code];
      return "<tr><td><a href=\"/territoire/" + V.esc(code) + "\">" + V.esc(code) + " " +
        V.esc(names[code] || "") + "</a></td><td><span class=\"swatch\" data-level=\"" + a.level +
        "\"></span>" + LEVEL_FR[a.level] + "</td><td>" + V.pct(a.p_exceed_7d) + "</td><td>" +
        V.pct(a.p_exceed_14d) + "</td><td>" + V.num(a.capacity) + "</td></tr>";
    });
    document.querySelector("#alert-table tbody").innerHTML = rows.join("");
  }

  function paintRisk(risk) {
    var items = risk.available ? risk.items : {};
    document.querySelectorAll("#map .tile").forEach(function (tile) {
      var code = tile.dataset.code, r = items[code];
      tile.dataset.risk = r ? r.level : -1;
      tile.dataset.complete = r && !r.complete ? "0" : "1";
      texts.risk[code] = code + " " + (names[code] || "") + " — " + (r ? r.message :
        "niveau de risque inconnu.");
    });
    var meta = document.getElementById("risk-meta");
    var picker = document.getElementById("risk-date");
    if (risk.available) {
      picker.min = risk.first_date || ""; picker.max = risk.last_date || "";
      picker.value = risk.date || "";
      var counts = {};
      Object.values(items).forEach(function (r) { counts[r.level] = (counts[r.level] || 0) + 1; });
      var partial = Object.values(items).filter(function (r) { return !r.complete; }).length;
      var estimated = Object.values(items).filter(function (r) {
        return r.estimated && r.estimated.length; }).length;
      meta.textContent = "Niveau de risque au " + V.date(risk.date) + " (données : version " +
        V.vintageDate(risk.vintage_id) + "). " + Object.keys(risk.levels).sort().reverse().map(
          function (lv) { return risk.levels[lv] + " : " + (counts[lv] || 0); }).join(", ") +
        ". Données incomplètes pour " + partial + " département(s) : la couleur est le niveau " +
        "atteint, le niveau réel peut être plus élevé. " + (estimated ? "Taux d'incidence " +
        "estimé à partir des tests positifs du criblage pour " + estimated + " département(s). "
        : "") + "Seuils et source : page Méthodes et données.";
    } else {
      meta.textContent = "Niveaux de risque indisponibles : " + risk.reason;
    }
    var rows = Object.keys(items).sort(function (a, b) {
      return (items[b].level - items[a].level) || a.localeCompare(b);
    }).map(function (code) {
      var r = items[code];
      return "<tr><td><a href=\"/territoire/" + V.esc(code) + "\">" + V.esc(code) + " " +
        V.esc(names[code] || "") + "</a></td><td><span class=\"swatch\" data-risk=\"" + r.level +
        "\"></span>" + V.esc(r.label) + "</td><td>" + V.date(r.date) + "</td><td>" +
        V.esc((r.estimated || []).join(", ") || "–") + "</td><td>" +
        V.esc(r.missing.join(", ") || "–") + "</td></tr>";
    });
    document.querySelector("#risk-table tbody").innerHTML = rows.join("");
  }

  function setMode(m) {
    var risk = m === "risk";
    document.getElementById("map").dataset.mode = m;
    document.getElementById("legend-capacity").hidden = risk;
    document.getElementById("legend-risk").hidden = !risk;
    document.getElementById("risk-meta").hidden = !risk;
    document.getElementById("risk-date-box").hidden = !risk;
    document.getElementById("alert-meta").hidden = risk;
    document.getElementById("risk-table-box").hidden = !risk;
    document.getElementById("alert-table").closest("details").hidden = risk;
    document.getElementById("map-title").textContent = risk ? "Niveau de risque par département"
                                                            : "Niveau d'alerte par département";
    showTitles();
  }

  document.getElementById("risk-date").addEventListener("change", function (ev) {
    if (!ev.target.value) { return; }
    V.fetchJSON("/tableau/donnees/risque?date=" + encodeURIComponent(ev.target.value))
      .then(paintRisk).then(showTitles).catch(function (err) {
        document.getElementById("risk-meta").textContent = "Erreur de chargement : " + err.message;
      });
  });

  document.querySelectorAll("input[name=colour-by]").forEach(function (input) {
    input.addEventListener("change", function () { if (input.checked) { setMode(input.value); } });
  });

  function drawNational(data) {
    var meta = document.getElementById("national-meta");
    var div = document.getElementById("national-chart");
    V.fanChart(div, {observed: data.observed, forecast: data.forecast,
                     unit: "patients par semaine", filename: "vigie_france_hospitalisations",
                     window: 364}).then(function () {
      V.firstChartAt = performance.now();
      div.dataset.drawn = "1";
    });
    var parts = [];
    if (data.observed.available) {
      parts.push("Observé jusqu'au " + V.date(data.observed.dates[data.observed.dates.length - 1]) +
                 " (" + V.esc(data.observed.source) + ")");
    }
    if (data.forecast.available) {
      parts.push("prévision du " + V.date(data.forecast.forecast_date) + ", modèle " +
                 V.esc(data.forecast.model) + " v" + V.esc(data.forecast.model_version));
    } else {
      parts.push("pas de prévision : " + V.esc(data.forecast.reason));
    }
    meta.textContent = parts.join(" ; ") + ".";
  }

  V.ready.then(function () {
    return V.fetchJSON("/tableau/donnees/ensemble");
  }).then(function (data) {
    paintMap(data.alerts);
    paintRisk(data.risk);
    var checked = document.querySelector("input[name=colour-by]:checked");
    setMode(checked ? checked.value : "capacity");
    drawNational(data);
  }).catch(function (err) {
    document.getElementById("alert-meta").textContent = "Erreur de chargement : " + err.message;
  });
})();
