/* Précision des prévisions, in plain French: the retrospective track record (backtests by
   target, level, period and horizon: a chart and its table), then the published forecasts
   scored once their outcome is known (relative WIS over time, coverage per horizon). */
(function () {
  "use strict";
  var V = window.Vigie;
  var label = function (m) { return V.MODEL_FR[m] || m; };
  var TARGET_FR = {inc_hosp: "nouvelles hospitalisations", inc_icu: "nouvelles admissions en réanimation",
                   hosp: "lits d'hospitalisation occupés", icu: "lits de réanimation occupés",
                   er_visits: "passages aux urgences pour Covid-19", unemployment: "taux de chômage"};
  var LEVEL_FR = {national: "France entière", region: "régions", department: "départements"};
  var PLURAL = {semaine: "semaines", jour: "jours", trimestre: "trimestres"};

  function horizonText(h, unit) {
    return "à " + h + " " + (h > 1 ? (PLURAL[unit] || unit) : unit);
  }

  /* ---- retrospective ---- */
  function span(p) {
    return p.label + " : prévisions du " + V.date(p.start) + " au " + V.date(p.end);
  }

  function retroSentence(group) {
    var row = group.rows.filter(function (r) { return r.period === "held_out"; })[0] || group.rows[0];
    if (!row) { return ""; }
    var hs = group.horizons.filter(function (h) { return row.by_horizon[h] && row.by_horizon[h].relative_wis !== null; });
    if (!hs.length) { return ""; }
    var first = row.by_horizon[hs[0]], last = row.by_horizon[hs[hs.length - 1]];
    var period = group.periods.filter(function (p) { return p.period === row.period; })[0];
    var text = "Sur la période de " + (row.period === "held_out" ? "test" : row.period_label) +
      (period ? " (prévisions du " + V.date(period.start) + " au " + V.date(period.end) + ")" : "") + ", pour " + (row.level === "national" ? "la France entière" : "les " +
      row.level_label.toLowerCase()) + ", l'erreur des prévisions " + horizonText(hs[0], group.unit) + " valait " +
      V.num(first.relative_wis, 2) + " fois celle de la méthode naïve";
    if (hs.length > 1) {
      text += ", et " + V.num(last.relative_wis, 2) + " " + horizonText(hs[hs.length - 1], group.unit);
    }
    text += ". La fourchette à 90 % a contenu la réalité " + V.num(100 * first.coverage_90) + " fois sur 100 " +
      horizonText(hs[0], group.unit) + " (attendu : 90).";
    return text;
  }

  function retroTable(group, index) {
    var head = "<tr><th scope=\"col\">Niveau</th><th scope=\"col\">Période</th>" + group.horizons.map(function (h) {
      return "<th scope=\"col\" class=\"num\">" + horizonText(h, group.unit) + "</th>";
    }).join("") + "</tr>";
    var body = group.rows.map(function (r) {
      return "<tr data-level=\"" + V.esc(r.level) + "\" data-period=\"" + V.esc(r.period) + "\"><th scope=\"row\">" +
        V.esc(r.level_label) + "</th><td>" + V.esc(r.period_label) + "</td>" + group.horizons.map(function (h) {
          var c = r.by_horizon[h];
          if (!c) { return "<td class=\"num\">–</td>"; }
          return "<td class=\"num\"><strong class=\"rel-wis\">" + V.num(c.relative_wis, 2) + "</strong><br><small>" +
            "50 % : " + V.pct(c.coverage_50) + " · 90 % : " + V.pct(c.coverage_90) + "<br>" +
            V.num(c.n_forecasts) + " prévisions</small></td>";
        }).join("") + "</tr>";
    }).join("");
    return "<table class=\"retro-table\" id=\"retro-table-" + index + "\"><caption>Erreur comparée à la méthode naïve " +
      "(en gras ; moins de 1 : mieux que la méthode naïve), puis part des valeurs réelles dans les fourchettes à 50 % et 90 %" +
      "</caption><thead>" + head + "</thead><tbody>" + body + "</tbody></table>";
  }

  function drawRetroGroup(group, index) {
    var box = document.createElement("article");
    box.className = "panel retro";
    box.dataset.target = group.target;
    box.innerHTML = "<h3>" + V.esc(group.title) + "</h3><p class=\"verdict\">" + V.esc(retroSentence(group)) + "</p>" +
      "<div class=\"chart small\" id=\"retro-" + index + "\" role=\"img\" aria-label=\"Erreur comparée à la méthode " +
      "naïve par horizon, par niveau et par période (le tableau ci-dessous donne les mêmes valeurs)\"></div>" +
      retroTable(group, index) + "<p class=\"meta\">" + V.esc(group.periods.map(span).join(" ; ")) + ". Modèle : " +
      V.esc(group.models.map(function (m) {
        var parts = m.split(" ");
        return label(parts[0]) + (parts[1] ? " version " + parts[1] : "");
      }).join(", ")) + ".</p>";
    document.getElementById("retro-groups").appendChild(box);
    var traces = [], levels = [];
    group.rows.forEach(function (r) { if (levels.indexOf(r.level) < 0) { levels.push(r.level); } });
    group.rows.forEach(function (r) {
      var hs = group.horizons.filter(function (h) { return r.by_horizon[h] && r.by_horizon[h].relative_wis !== null; });
      traces.push({x: hs, y: hs.map(function (h) { return r.by_horizon[h].relative_wis; }),
                   mode: "lines+markers", name: r.level_label + ", " + r.period_label,
                   line: {color: V.COLORS[levels.indexOf(r.level) % V.COLORS.length], width: 2,
                          dash: r.period === "held_out" ? "solid" : "dash"},
                   hovertemplate: "%{y:.2f}<extra>%{fullData.name}</extra>"});
    });
    traces.push({x: [group.horizons[0], group.horizons[group.horizons.length - 1]], y: [1, 1], mode: "lines",
                 name: "méthode naïve (= 1)", line: {color: "#555", width: 1.5, dash: "dot"}, hoverinfo: "skip"});
    var layout = V.baseLayout("erreur relative");
    layout.height = 300;
    layout.xaxis = {type: "linear", tickvals: group.horizons, gridcolor: "#e5e5e5",
                    ticktext: group.horizons.map(function (h) { return horizonText(h, group.unit); })};
    layout.hovermode = "closest";
    return Plotly.newPlot("retro-" + index, traces, layout, V.plotConfig("vigie_precision_retrospective"));
  }

  /* The groups of the retrospective track record (none before it is computed). */
  function retrospective(retro) {
    var status = document.getElementById("retro-status");
    if (!retro || !retro.available) {
      status.textContent = V.sentence(retro ? retro.reason : "pas encore calculé");
      return [];
    }
    status.textContent = "Calculé le " + V.date(retro.computed_at) + " ; " + retro.groups.length +
      " série(s) prévue(s). Trait plein : période de test ; tirets : période de développement." +
      (retro.pending && retro.pending.length ? " Encore en cours de calcul : " +
        retro.pending.join(", ") + "." : "");
    return retro.groups;
  }

  /* ---- published forecasts ---- */

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
    return Promise.all([first, Plotly.newPlot("cov-" + index, cov, cl, V.plotConfig("vigie_couverture"))]);
  }

  function leaderboard(lb) {
    if (!lb || !lb.models) { return; }
    var section = document.getElementById("leaderboard");
    section.hidden = false;
    document.getElementById("lb-meta").textContent = "Rétrospectif : prévisions refaites après coup sur des données passées (" +
      (TARGET_FR[lb.target] || lb.target) + ", " + (LEVEL_FR[lb.level] || lb.level) + "), dates de prévision du " + V.date((lb.forecast_dates || [])[0]) + " au " +
      V.date((lb.forecast_dates || []).slice(-1)[0]) + ", chacune avec les seules données connues à sa date.";
    section.querySelector("tbody").innerHTML = lb.models.map(function (r) {
      return "<tr><td>" + V.esc(label(r.model)) + "</td><td class=\"num\">" + (r.horizon === undefined ? "toutes" : r.horizon) +
        "</td><td class=\"num\">" + V.num(r.rel_wis, 2) + "</td><td class=\"num\">" + V.pct(r.cov50) + "</td><td class=\"num\">" +
        V.pct(r.cov95) + "</td></tr>";
    }).join("");
  }

  V.load("/tableau/donnees/precision").then(function (data) {
    var retroGroups = retrospective(data.retrospective);
    var status = document.getElementById("precision-status");
    if (!data.groups.length) {
      status.textContent = "Aucune prévision publiée n'a encore pu être comparée à la réalité" +
        (data.pending.length ? " (en attente d'observations : " + data.pending.join(", ") + ")" : "") +
        ". Chacune le sera dès que les jours ou les semaines qu'elle prévoit auront été observés ; " +
        "en attendant, l'historique rétrospectif ci-dessus donne la mesure de leur précision.";
    } else {
      status.textContent = "Scores calculés sur les prévisions publiées dont l'issue est connue." +
        (data.pending.length ? " En attente d'observations : " + data.pending.join(", ") + "." : "");
    }
    leaderboard(data.leaderboard);
    /* Retrospective groups, then the published forecasts' groups, one after the other. */
    var drawn = 0;
    function marked(promise) {
      return Promise.resolve(promise).then(function () { if (drawn++ === 0) { V.markFirstChart(); } });
    }
    return V.sequence(retroGroups, function (g, i) { return marked(drawRetroGroup(g, i)); }).then(function () {
      document.getElementById("retro-groups").dataset.drawn = String(retroGroups.length);
      return V.sequence(data.groups, function (g, i) { return marked(drawGroup(g, i)); });
    }).then(function () {
      if (!drawn) { V.noFirstChart(); }
      document.getElementById("groups").dataset.drawn = String(data.groups.length);
    });
  }).catch(function (err) {
    V.noFirstChart();
    document.getElementById("precision-status").textContent = "Erreur de chargement : " + V.errorFr(err) + ".";
  });
})();
