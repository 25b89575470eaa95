/* Vue d'ensemble: colour the tile map by alert level, draw the national curve. */
(function () {
  "use strict";
  var V = window.Vigie;
  var names = JSON.parse(document.getElementById("dep-names").textContent || "{}");
  var LEVEL_FR = {red: "rouge", orange: "orange", yellow: "jaune", green: "vert", unknown: "inconnu"};
  var ORDER = {red: 0, orange: 1, yellow: 2, green: 3, unknown: 4};

  function paintMap(alerts) {
    var items = alerts.available ? alerts.items : {};
    var info = document.getElementById("tile-info");
    document.querySelectorAll("#map .tile").forEach(function (tile) {
      var code = tile.dataset.code, a = items[code];
      var level = a ? a.level : "unknown";
      tile.dataset.level = level;
      var text = a ? a.message : (names[code] || code) + " : pas d'alerte calculée.";
      tile.querySelector("title").textContent = code + " " + (names[code] || "") + " — niveau " +
        LEVEL_FR[level] + ". " + text;
      var show = function () { info.textContent = text; };
      tile.addEventListener("mouseenter", show);
      tile.addEventListener("focus", show);
    });
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
    drawNational(data);
  }).catch(function (err) {
    document.getElementById("alert-meta").textContent = "Erreur de chargement : " + err.message;
  });
})();
