/* Territoire: the epidemic signals next to admissions — incidence, positivity, R(t) with its
   95 % credible interval and its basis (cases or admissions), growth with doubling/halving time,
   vaccination. A panel without data says so in words (no empty chart). A département's
   incidence is Vigie's estimate from screening (dashed, said so, how it is made), drawn with
   its région's own incidence for comparison (dotted). */
(function () {
  "use strict";
  var V = window.Vigie;
  var root = document.getElementById("panels");
  var code = root.dataset.code, parent = root.dataset.parent;
  var BASIS = {1: "des cas confirmés (tests positifs SI-DEP)",
               2: "des hospitalisations (il décrit les contaminations d'environ 10 jours plus tôt)"};
  var BASIS_SHORT = {1: "cas confirmés", 2: "hospitalisations"};
  var panels = {};

  function byRole(p, role) { return p.series.filter(function (s) { return s.role === role; }); }
  /* The series a panel draws: its own lines, then an estimate, then a comparison. */
  var DRAWN = {line: 0, estimate: 1, comparison: 2};
  function drawn(p) {
    return p.series.filter(function (s) { return s.role in DRAWN && s.available; });
  }
  function find(p, name) { return p.series.filter(function (s) { return s.indicator === name; })[0]; }
  /* The index of the series' last value (not its last date: a value may be masked or not
     computed there), -1 when it has none. */
  function last(s) {
    if (!s || !s.available) { return -1; }
    for (var i = s.values.length - 1; i >= 0; i--) {
      if (s.values[i] !== null && s.values[i] !== undefined) { return i; }
    }
    return -1;
  }
  var NO_VALUE = "Pas de valeur publiée pour ce territoire sur la période (trop peu de données " +
    "pour l'estimer, ou valeurs masquées).";

  function layout(unit, extra) {
    var l = V.baseLayout(unit);
    l.yaxis.tickformat = ",~r";
    return Object.assign(l, extra || {});
  }

  function window_(l, dates, days) {
    if (dates.length) {
      var end = dates[dates.length - 1];
      l.xaxis.range = [V.shiftDate(end, -days), V.shiftDate(end, 4)];
    }
  }

  function lineTraces(p, scale, digits) {
    var k = 0;
    return drawn(p).map(function (s) {
      var line = s.role === "estimate" ? {color: V.COLORS[0], width: 2, dash: "dash"}
        : s.role === "comparison" ? {color: "#767676", width: 1.5, dash: "dot"}
        : {color: k === 0 ? "#1b1b1b" : V.COLORS[k], width: 2};
      if (s.role === "line") { k += 1; }
      return {x: s.dates, y: s.values.map(function (v) { return v === null ? null : v * scale; }),
              mode: "lines", name: s.label, connectgaps: false, line: line,
              meta: s.role === "line" ? s.indicator : s.role,
              hovertemplate: s.label + " : %{y:,." + digits + "f}<extra></extra>"};
    });
  }

  /* R(t): the credible band, then one line per basis (so the legend says which), then R = 1. */
  function rtTraces(p) {
    var rt = find(p, "rt"), lo = find(p, "rt_lower"), hi = find(p, "rt_upper");
    var basis = find(p, "epidemic_basis"), traces = [];
    var basisAt = {};
    if (basis && basis.available) {
      basis.dates.forEach(function (d, i) { basisAt[d] = basis.values[i]; });
    }
    if (lo && hi && lo.available && hi.available) {
      var hiAt = {};
      hi.dates.forEach(function (d, i) { hiAt[d] = hi.values[i]; });
      var x = lo.dates.filter(function (d) { return d in hiAt; });
      var loAt = {};
      lo.dates.forEach(function (d, i) { loAt[d] = lo.values[i]; });
      traces.push({x: x, y: x.map(function (d) { return loAt[d]; }), mode: "lines",
                   line: {width: 0, color: "rgba(0,0,0,0)"}, hoverinfo: "skip",
                   showlegend: false, name: "borne basse 95 %", meta: "band-low"});
      traces.push({x: x, y: x.map(function (d) { return hiAt[d]; }), mode: "lines",
                   line: {width: 0, color: "rgba(0,0,0,0)"}, fill: "tonexty",
                   fillcolor: "rgba(0,114,178,0.22)", name: "intervalle de crédibilité à 95 %",
                   meta: "band", customdata: x.map(function (d) { return loAt[d]; }),
                   hovertemplate: "95 % : %{customdata:.2f} – %{y:.2f}<extra></extra>"});
    }
    var groups = basis && basis.available ? [1, 2] : [null];
    groups.forEach(function (b, k) {
      var y = rt.values.map(function (v, i) {
        return b === null || basisAt[rt.dates[i]] === b ? v : null;
      });
      if (y.some(function (v) { return v !== null; })) {
        traces.push({x: rt.dates, y: y, mode: "lines", connectgaps: false,
                     name: b === null ? "R(t)" : "R(t) à partir des " + BASIS_SHORT[b],
                     meta: b === null ? "rt" : "rt-basis-" + b,
                     line: {color: k === 0 ? "#1b1b1b" : V.COLORS[1], width: 2},
                     hovertemplate: "R(t) : %{y:.2f}<extra></extra>"});
      }
    });
    traces.push({x: [rt.dates[0], V.shiftDate(rt.dates[rt.dates.length - 1], 4)], y: [1, 1],
                 mode: "lines", line: {color: V.CAPACITY_COLOR, width: 1.5, dash: "dot"},
                 name: "R = 1 (seuil de croissance)", meta: "threshold", hoverinfo: "skip"});
    return traces;
  }

  /* "R(t) estimé à partir des cas… ; base selon la période : …" */
  function rtNote(p) {
    var basis = find(p, "epidemic_basis"), rt = find(p, "rt");
    var i = last(rt);
    if (i < 0) { return NO_VALUE; }
    var at = {};
    if (basis && basis.available) { basis.dates.forEach(function (d, j) { at[d] = basis.values[j]; }); }
    var b = at[rt.dates[i]];
    var text = "Dernière estimation, au " + V.date(rt.dates[i]) + " : R(t) = " + V.num(rt.values[i], 2);
    var lo = find(p, "rt_lower"), hi = find(p, "rt_upper");
    if (lo && hi && last(lo) >= 0 && last(hi) >= 0 && lo.dates[last(lo)] === rt.dates[i] &&
        hi.dates[last(hi)] === rt.dates[i]) {
      text += " (intervalle de crédibilité à 95 % : " + V.num(lo.values[last(lo)], 2) + " – " +
              V.num(hi.values[last(hi)], 2) + ")";
    }
    text += b in BASIS ? ", estimé à partir " + BASIS[b] + "." : ".";
    var runs = [], prev = null;
    rt.dates.forEach(function (d) {
      var v = at[d];
      if (!(v in BASIS)) { return; }
      if (prev && prev.basis === v) { prev.end = d; } else { prev = {basis: v, start: d, end: d}; runs.push(prev); }
    });
    if (runs.length > 1) {
      text += " La base change selon la période : " + runs.map(function (r) {
        return BASIS_SHORT[r.basis] + " du " + V.date(r.start) + " au " + V.date(r.end);
      }).join(" ; ") + ".";
    }
    return text;
  }

  function growthNote(p) {
    var g = find(p, "growth_rate"), dt = find(p, "doubling_time");
    var i = last(g);
    if (i < 0) { return NO_VALUE; }
    var day = g.dates[i], rate = g.values[i];
    var text = "Au " + V.date(day) + " : croissance de " + V.num(100 * rate, 1) + " % par jour";
    var j = last(dt);
    if (j >= 0 && dt.dates[j] === day && dt.values[j] !== null) {
      var d = dt.values[j];
      text += d > 0 ? ", soit un doublement en " + V.num(d, 0) + " jours."
                    : ", soit une division par deux en " + V.num(-d, 0) + " jours.";
    } else {
      text += " : évolution trop lente pour un temps de doublement (plus de six mois).";
    }
    return text + basisOf(day);
  }

  /* The basis of the epidemic indicators on a day (the same for R(t) and growth). */
  function basisOf(day) {
    var basis = panels.rt && find(panels.rt, "epidemic_basis");
    var i = basis && basis.available ? basis.dates.indexOf(day) : -1;
    var b = i < 0 ? null : basis.values[i];
    return b in BASIS_SHORT ? " Calculé à partir des " + BASIS_SHORT[b] + "." : "";
  }

  function vaccinationNote(p) {
    var s = byRole(p, "line")[0], i = last(s);
    return i < 0 ? "" : "Au " + V.date(s.dates[i]) + " : " + V.num(s.values[i], 1) +
      " % de la population a reçu au moins une dose.";
  }

  function latestNote(p, digits, unit) {
    var said = drawn(p).filter(function (s) { return last(s) >= 0; });
    var text = said.length ? said.map(function (s) {
      var i = last(s);
      return "Au " + V.date(s.dates[i]) + " : " + V.num(s.values[i], digits) + " " + unit +
        " (" + s.label + ")";
    }).join(" ; ") + "." : NO_VALUE;
    return p.estimated ? text + " " + estimateNote(p) : text;
  }

  /* How the estimate is made, the days it covers, and the days with no incidence at all. */
  function estimateNote(p) {
    var est = byRole(p, "estimate")[0], own = byRole(p, "line").filter(function (s) { return s.available; });
    var first = est.dates[0], text = p.estimate_note + " Estimation disponible du " + V.date(first) +
      " au " + V.date(est.dates[est.dates.length - 1]) + " ; ";
    var ownEnd = own.length ? own[0].dates[own[0].dates.length - 1] : null;
    if (!ownEnd) {
      text += "avant, pas de taux d'incidence quotidien pour ce territoire.";
    } else if (V.shiftDate(ownEnd, 1) < first) {
      text += "taux publié jusqu'au " + V.date(ownEnd) + ", pas de taux d'incidence du " +
        V.date(V.shiftDate(ownEnd, 1)) + " au " + V.date(V.shiftDate(first, -1)) + ".";
    } else {
      text += "taux publié les autres jours.";
    }
    return text;
  }

  function metaText(p) {
    var s = drawn(p)[0];
    return "Source : " + p.source + " (" + p.licence + ") ; version des données " +
      V.vintageDate(s.vintage_id) + ".";
  }

  function draw(p) {
    var div = document.getElementById("chart-" + p.key);
    var note = document.getElementById("note-" + p.key);
    var meta = document.getElementById("meta-" + p.key);
    panels[p.key] = p;
    if (!p.available) {
      div.hidden = true;
      div.dataset.drawn = "empty";
      note.textContent = "";
      meta.textContent = p.missing;
      if (parent && (p.key === "incidence" || p.key === "positivity")) {
        var a = document.createElement("a");
        a.href = "/territoire/" + encodeURIComponent(parent);
        a.textContent = " Voir la région.";
        meta.appendChild(a);
      }
      document.getElementById("panel-" + p.key).classList.add("empty");
      return;
    }
    var traces, l, dates = drawn(p).map(function (s) { return s.dates; }).reduce(function (a, b) {
      return a.length && b.length && a[a.length - 1] >= b[b.length - 1] ? a : b;
    }, []);
    if (p.key === "rt") {
      traces = rtTraces(p);
      l = layout(p.unit);
      l.yaxis.rangemode = "normal";
      note.textContent = rtNote(p);
    } else if (p.key === "growth") {
      traces = lineTraces(p, 100, 1);
      l = layout(p.unit);
      l.yaxis.rangemode = "normal";
      l.yaxis.zeroline = true;
      note.textContent = growthNote(p);
    } else {
      traces = lineTraces(p, 1, 1);
      l = layout(p.unit);
      if (p.key === "vaccination") { l.yaxis.range = [0, 100]; }
      note.textContent = p.key === "vaccination" ? vaccinationNote(p) : latestNote(p, 1, p.unit);
    }
    window_(l, dates, 364);
    meta.textContent = metaText(p);
    document.querySelectorAll("#panel-" + p.key + " button").forEach(function (b) { b.disabled = false; });
    return Plotly.newPlot(div, traces, l, V.plotConfig("vigie_" + code + "_" + p.key)).then(function () {
      div.dataset.drawn = "1";
    });
  }

  /* "Niveau de risque au …: Alerte maximale (…)", with a link to the thresholds. */
  function riskLine(risk) {
    var p = document.getElementById("risk-line");
    if (!risk || !risk.available) {
      p.textContent = "Niveau de risque : non évalué (" + (risk ? risk.reason : "indisponible") + ").";
      return;
    }
    var sw = document.createElement("span");
    sw.className = "swatch"; sw.dataset.risk = risk.level;
    p.appendChild(sw);
    var text = "Niveau de risque au " + V.date(risk.date) + " : " + risk.label;
    if (risk.met.length) { text += " — " + risk.met.join(" ; "); }
    if (risk.estimated && risk.estimated.length) {
      text += ". Donnée estimée : " + risk.estimated.join(", ");
    }
    if (risk.missing.length) { text += ". Données manquantes : " + risk.missing.join(", "); }
    p.appendChild(document.createTextNode(text + ". "));
    var a = document.createElement("a");
    a.href = "/methodes#niveau-de-risque"; a.textContent = "Seuils et source";
    p.appendChild(a);
    p.dataset.level = risk.level;
  }

  document.addEventListener("click", function (ev) {
    var b = ev.target.closest("button.dl-signal");
    if (!b) { return; }
    var p = panels[b.dataset.signal], rows = [];
    p.series.forEach(function (s) {
      if (!s.available) { return; }
      var where = s.territory || code;
      s.dates.forEach(function (d, i) { rows.push([V.date(d), where, s.indicator, s.label, s.values[i]]); });
    });
    V.downloadCSV("vigie_" + code + "_" + p.key, ["date", "territoire", "indicateur", "série", "valeur"], rows);
  });

  /* Fetched at once, drawn once the admissions chart is (territory.js), one after the other. */
  var signals = V.ready.then(function () {
    return V.fetchJSON("/tableau/donnees/signaux/" + encodeURIComponent(code));
  });
  Promise.all([signals, V.firstChart]).then(function (answers) {
    var data = answers[0];
    riskLine(data.risk);
    data.panels.forEach(function (p) { panels[p.key] = p; });  // growth reads R(t)'s basis
    return V.sequence(data.panels, draw);
  }).catch(function (err) {
    document.querySelectorAll(".panel.signal .meta").forEach(function (m) {
      m.textContent = "Erreur de chargement : " + V.errorFr(err) + ".";
    });
  });
})();
