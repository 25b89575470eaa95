/* Vue d'ensemble: colour the map of France by alert or risk level, move through it with the
   keyboard, draw the national curve.

   Keyboard: the map is one Tab stop (roving tabindex): arrows move to the nearest département
   in that direction (by centroid), Home/End to the first/last, digits typed quickly jump to a
   code ("6", "9" → Rhône; "2A"), Enter follows the link (the browser's own behaviour for an
   SVG <a href>). The enlarged copies of Paris and its neighbours are for the mouse only. */
(function () {
  "use strict";
  var V = window.Vigie;
  var map = document.getElementById("map");
  var names = JSON.parse(document.getElementById("dep-names").textContent || "{}");
  var LEVEL_FR = {red: "rouge", orange: "orange", yellow: "jaune", green: "vert", unknown: "inconnu"};
  var ORDER = {red: 0, orange: 1, yellow: 2, green: 3, unknown: 4};
  var deps = Array.prototype.slice.call(map.querySelectorAll("a.dep"));
  var byCode = {};
  deps.forEach(function (a) { byCode[a.dataset.code] = a; });
  var info = document.getElementById("tile-info");
  var ring = document.getElementById("focus-ring");

  /* One sentence per département and colouring: the aria-label and the info line follow the mode. */
  var texts = {capacity: {}, risk: {}};
  function mode() { return map.dataset.mode; }
  function label(code) { return (names[code] || code) + " (" + code + ")"; }

  function showTitles() {
    var m = mode();
    deps.forEach(function (a) {
      var code = a.dataset.code;
      a.setAttribute("aria-label", texts[m][code] || label(code));
    });
  }

  function each(code, fn) {
    map.querySelectorAll("[data-code=\"" + code + "\"]").forEach(fn);
  }

  function show(code) {
    info.textContent = texts[mode()][code] || label(code);
  }

  function paintMap(alerts) {
    var items = alerts.available ? alerts.items : {};
    deps.forEach(function (a) {
      var code = a.dataset.code, item = items[code];
      var level = item ? item.level : "unknown";
      each(code, function (el) { el.dataset.level = level; });
      var text = item ? item.message : "pas d'alerte calculée.";
      var own = (names[code] || "") + " : ";
      if (text.indexOf(own) === 0) { text = V.sentence(text.slice(own.length)); }  // name said once
      texts.capacity[code] = label(code) + " : niveau " + LEVEL_FR[level] + ". " + text;
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
      meta.textContent = "Alertes indisponibles : " + V.sentence(alerts.reason);
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
    document.querySelector("#alert-table tbody").innerHTML = rows.join("") ||
      "<tr><td colspan=\"5\">Aucune alerte calculée pour l'instant.</td></tr>";
  }

  function paintRisk(risk) {
    var items = risk.available ? risk.items : {};
    deps.forEach(function (a) {
      var code = a.dataset.code, r = items[code];
      each(code, function (el) {
        el.dataset.risk = r ? r.level : -1;
        el.dataset.complete = r && !r.complete ? "0" : "1";
      });
      texts.risk[code] = label(code) + " : " + (r ? r.label + ". " + r.message :
        "niveau de risque inconnu.");
    });
    var meta = document.getElementById("risk-meta");
    var picker = document.getElementById("risk-date");
    if (risk.available) {
      picker.dataset.min = risk.first_date || ""; picker.dataset.max = risk.last_date || "";
      picker.value = V.date(risk.date);
      document.getElementById("risk-date-range").textContent = "(du " + V.date(risk.first_date) +
        " au " + V.date(risk.last_date) + ")";
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
      meta.textContent = "Niveaux de risque indisponibles : " + V.sentence(risk.reason);
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
    document.querySelector("#risk-table tbody").innerHTML = rows.join("") ||
      "<tr><td colspan=\"5\">Aucun niveau de risque calculé pour l'instant.</td></tr>";
  }

  function setMode(m) {
    var risk = m === "risk";
    map.dataset.mode = m;
    document.getElementById("legend-capacity").hidden = risk;
    document.getElementById("legend-risk").hidden = !risk;
    document.getElementById("risk-meta").hidden = !risk;
    document.getElementById("risk-date-box").hidden = !risk;
    document.getElementById("alert-meta").hidden = risk;
    document.getElementById("risk-table-box").hidden = !risk;
    document.getElementById("alert-table-box").hidden = risk;
    document.getElementById("map-title").textContent = risk ? "Niveau de risque par département"
                                                            : "Niveau d'alerte par département";
    showTitles();
  }

  /* ---- pointer and keyboard ---- */
  function highlight(code) {
    var a = byCode[code];
    ring.setAttribute("d", a ? a.querySelector("path").getAttribute("d") : "");
    if (a) { show(code); }
  }

  function focusDep(a) {
    deps.forEach(function (other) { other.tabIndex = other === a ? 0 : -1; });
    a.focus();
  }

  /* The nearest département whose centroid lies in the arrow's direction (within ±60°),
     distance weighted against straying off the axis. */
  function neighbour(from, dx, dy) {
    var x0 = Number(from.dataset.cx), y0 = Number(from.dataset.cy), best = null, bestScore = Infinity;
    deps.forEach(function (a) {
      if (a === from) { return; }
      var x = Number(a.dataset.cx) - x0, y = Number(a.dataset.cy) - y0;
      var along = x * dx + y * dy, across = Math.abs(x * dy - y * dx);
      if (along <= 0 || across > along * 1.8) { return; }
      var score = along + 2 * across;
      if (score < bestScore) { bestScore = score; best = a; }
    });
    return best;
  }

  var typed = "", typedAt = 0;
  map.addEventListener("keydown", function (ev) {
    var a = ev.target.closest ? ev.target.closest("a.dep") : null;
    if (!a) { return; }
    var moves = {ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1]};
    var next = null;
    if (moves[ev.key]) {
      next = neighbour(a, moves[ev.key][0], moves[ev.key][1]);
    } else if (ev.key === "Home") {
      next = deps[0];
    } else if (ev.key === "End") {
      next = deps[deps.length - 1];
    } else if (/^[0-9abAB]$/.test(ev.key)) {
      var now = Date.now();
      typed = (now - typedAt < 1200 ? typed : "") + ev.key.toUpperCase();
      typedAt = now;
      next = byCode[typed] || null;
    } else if (ev.key === " ") {
      ev.preventDefault();
      a.click();
      return;
    } else {
      return;
    }
    ev.preventDefault();
    if (next) { focusDep(next); }
  });
  map.addEventListener("focusin", function (ev) {
    var a = ev.target.closest ? ev.target.closest("a.dep") : null;
    if (a) {
      deps.forEach(function (other) { other.tabIndex = other === a ? 0 : -1; });
      highlight(a.dataset.code);
      map.classList.add("has-focus");
    }
  });
  map.addEventListener("focusout", function () { map.classList.remove("has-focus"); ring.setAttribute("d", ""); });
  map.addEventListener("mouseover", function (ev) {
    var a = ev.target.closest ? ev.target.closest("[data-code]") : null;
    if (a && !map.classList.contains("has-focus")) { highlight(a.dataset.code); }
  });
  map.addEventListener("mouseleave", function () {
    if (!map.classList.contains("has-focus")) { ring.setAttribute("d", ""); }
  });

  /* The day is typed dd/mm/yyyy (a native date field would follow the browser's language). */
  document.getElementById("risk-date").addEventListener("change", function (ev) {
    var m = /^(\d{2})\/(\d{2})\/(\d{4})$/.exec(ev.target.value.trim());
    var meta = document.getElementById("risk-meta");
    if (!m) { meta.textContent = "Date à écrire jj/mm/aaaa."; return; }
    var iso = m[3] + "-" + m[2] + "-" + m[1];
    var lo = ev.target.dataset.min, hi = ev.target.dataset.max;
    if ((lo && iso < lo) || (hi && iso > hi)) {
      meta.textContent = "Date hors de la période évaluée (du " + V.date(lo) + " au " + V.date(hi) + ").";
      return;
    }
    V.fetchJSON("/tableau/donnees/risque?date=" + encodeURIComponent(iso))
      .then(paintRisk).then(showTitles).catch(function (err) {
        document.getElementById("risk-meta").textContent = "Erreur de chargement : " + V.errorFr(err);
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
      div.dataset.drawn = "1";
      V.markFirstChart();
    });
    var parts = [];
    if (data.observed.available) {
      parts.push("Observé jusqu'au " + V.date(data.observed.dates[data.observed.dates.length - 1]) +
                 " (" + data.observed.source + ")");
    } else {
      parts.push("Pas d'observation : " + data.observed.reason);
    }
    if (data.forecast.available) {
      parts.push("prévision du " + V.date(data.forecast.forecast_date) + ", " +
                 V.modelLabel(data.forecast.model, data.forecast.model_version));
    } else {
      parts.push("pas de prévision : " + data.forecast.reason);
    }
    meta.textContent = parts.join(" ; ") + ".";
  }

  V.load("/tableau/donnees/ensemble").then(function (data) {
    paintMap(data.alerts);
    paintRisk(data.risk);
    var checked = document.querySelector("input[name=colour-by]:checked");
    setMode(checked ? checked.value : "capacity");
    map.dataset.painted = "1";
    drawNational(data);
  }).catch(function (err) {
    V.noFirstChart();
    document.getElementById("alert-meta").textContent = "Erreur de chargement : " + V.errorFr(err) + ".";
  });
})();
