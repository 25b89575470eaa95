/* Précision des prévisions: relative WIS over time, coverage per horizon, in plain French. */
(function () {
  "use strict";
  var V = window.Vigie;
  var MODEL_FR = {baseline: "méthode naïve", ensemble: "ensemble Vigie", ets: "lissage exponentiel (ETS)",
                  sarimax: "SARIMAX", prophet: "Prophet", gbm: "gradient boosting",
                  growth: "croissance amortie"};
  var label = function (m) { return MODEL_FR[m] || m; };

  function sentence(group) {
    var models = group.models.filter(function (m) { return m !== "baseline"; });
    var best = group.summary.filter(function (s) { return s.model !== "baseline" && s.rel_wis !== null; });
    if (!best.length) { return "Pas encore assez de prévisions comparables à la méthode naïve."; }
    var h1 = best.filter(function (s) { return s.horizon === Math.min.apply(null, best.map(function (b) { return b.horizon; })); });
    return h1.map(function (s) {
      var verdict = s.rel_wis < 0.95 ? "plus précise que" : (s.rel_wis > 1.05 ? "moins précise que" : "aussi précise que");
      return "À " + s.horizon + " " + group.unit + (s.horizon > 1 ? "s" : "") + ", la prévision « " + label(s.model) +
        " » a été " + verdict + " la méthode naïve (score " + V.num(s.rel_wis, 2) + ") ; sa fourchette à 90 % a contenu la " +
        "valeur réelle " + V.num(100 * s.cov90) + " fois sur 100 (attendu : 90) et celle à 50 %, " + V.num(100 * s.cov50) +
        " fois sur 100 (attendu : 50), sur " + s.n + " prévisions.";
    }).join(" ") + (models.length ? "" : "");
  }

  function drawGroup(group, index) {
    var box = document.createElement("section");
    box.className = "panel";
    box.innerHTML = "<h2>" + V.esc(group.title) + "</h2><p class=\"verdict\">" + V.esc(sentence(group)) + "</p>" +
      "<div class=\"panels\"><div><h3>Erreur comparée à la méthode naïve, par date de prévision</h3>" +
      "<div class=\"chart\" id=\"rel-" + index + "\" role=\"img\" aria-label=\"Erreur relative au fil du temps\"></div></div>" +
      "<div><h3>Couverture des fourchettes, par horizon</h3><div class=\"chart\" id=\"cov-" + index +
      "\" role=\"img\" aria-label=\"Couverture des intervalles à 50 et 90 %\"></div></div></div>" +
      "<p class=\"meta\">" + group.forecast_dates.length + " dates de prévision, du " + V.date(group.forecast_dates[0]) +
      " au " + V.date(group.forecast_dates[group.forecast_dates.length - 1]) + ".</p>";
    document.getElementById("groups").appendChild(box);

    var traces = [], k = 0;
    var models = group.models.filter(function (m) { return m !== "baseline"; });
    var horizons = Array.from(new Set(group.by_date.map(function (r) { return r.horizon; }))).sort();
    models.forEach(function (m) {
      horizons.forEach(function (h, j) {
        var rows = group.by_date.filter(function (r) { return r.model === m && r.horizon === h && r.rel_wis !== null; });
        if (!rows.length) { return; }
        traces.push({x: rows.map(function (r) { return r.forecast_date; }), y: rows.map(function (r) { return r.rel_wis; }),
                     mode: "lines+markers", name: label(m) + ", à " + h + " " + group.unit + (h > 1 ? "s" : ""),
                     line: {color: V.COLORS[k % V.COLORS.length], width: 2, dash: ["solid", "dash", "dot", "dashdot"][j % 4]},
                     hovertemplate: "%{y:.2f}<extra>%{fullData.name}</extra>"});
      });
      k++;
    });
    var dates = group.forecast_dates;
    traces.push({x: [dates[0], dates[dates.length - 1]], y: [1, 1], mode: "lines", name: "méthode naïve (= 1)",
                 line: {color: "#555", width: 1.5, dash: "dot"}, hoverinfo: "skip"});
    var layout = V.baseLayout("erreur relative (WIS)");
    layout.yaxis.rangemode = "tozero";
    layout.hovermode = "closest";
    var first = Plotly.newPlot("rel-" + index, traces, layout, V.plotConfig("vigie_precision"));

    var cov = [];
    models.forEach(function (m, i) {
      var rows = group.summary.filter(function (s) { return s.model === m; });
      [["cov50", "50 %"], ["cov90", "90 %"]].forEach(function (pair, j) {
        cov.push({type: "bar", x: rows.map(function (r) { return "à " + r.horizon + " " + group.unit + (r.horizon > 1 ? "s" : ""); }),
                  y: rows.map(function (r) { return 100 * r[pair[0]]; }), name: label(m) + " — fourchette " + pair[1],
                  marker: {color: V.COLORS[(2 * i + j) % V.COLORS.length]},
                  hovertemplate: "%{y:.0f} %<extra>%{fullData.name}</extra>"});
      });
    });
    var cl = V.baseLayout("% dans la fourchette");
    cl.xaxis = {type: "category"};
    cl.yaxis.range = [0, 100];
    cl.barmode = "group";
    cl.shapes = [50, 90].map(function (y) {
      return {type: "line", xref: "paper", x0: 0, x1: 1, y0: y, y1: y, line: {color: "#555", dash: "dot", width: 1}};
    });
    Plotly.newPlot("cov-" + index, cov, cl, V.plotConfig("vigie_couverture"));
    return first;
  }

  function leaderboard(lb) {
    if (!lb || !lb.models) { return; }
    var section = document.getElementById("leaderboard");
    section.hidden = false;
    document.getElementById("lb-meta").textContent = "Prévisions refaites sur le passé (" + lb.target + ", " + lb.level +
      "), dates de prévision du " + V.date((lb.forecast_dates || [])[0]) + " au " +
      V.date((lb.forecast_dates || []).slice(-1)[0]) + ", chacune avec les seules données connues à sa date.";
    section.querySelector("tbody").innerHTML = lb.models.map(function (r) {
      return "<tr><td>" + V.esc(label(r.model)) + "</td><td class=\"num\">" + (r.horizon === undefined ? "toutes" : r.horizon) +
        "</td><td class=\"num\">" + V.num(r.rel_wis, 2) + "</td><td class=\"num\">" + V.pct(r.cov50) + "</td><td class=\"num\">" +
        V.pct(r.cov95) + "</td></tr>";
    }).join("");
  }

  V.fetchJSON("/tableau/donnees/precision").then(function (data) {
    var status = document.getElementById("precision-status");
    if (!data.groups.length) {
      status.textContent = "Aucune prévision publiée n'a encore pu être comparée à la réalité" +
        (data.pending.length ? " (en attente : " + data.pending.join(", ") + ")." : ".");
    } else {
      status.textContent = "Scores calculés sur les prévisions publiées dont l'issue est connue." +
        (data.pending.length ? " En attente d'observations : " + data.pending.join(", ") + "." : "");
    }
    var draws = data.groups.map(drawGroup);
    leaderboard(data.leaderboard);
    return Promise.all(draws).then(function () {
      V.firstChartAt = performance.now();
      document.getElementById("groups").dataset.drawn = String(draws.length);
    });
  }).catch(function (err) {
    document.getElementById("precision-status").textContent = "Erreur de chargement : " + err.message;
  });
})();
