/* Ville: an EPCI's or a commune's own indicators (fan charts, per 100,000 inhabitants, how
   much of the EPCI a sum covers, whether Vigie beats the naive baseline), its métropole's
   incidence, its département's hospital pressure and unemployment. Every text is French; a
   part without data says why in words (no empty chart). */
(function () {
  "use strict";
  var V = window.Vigie;
  var root = document.getElementById("city");
  var code = root.dataset.code;
  var own = {};
  /* A count that adds up is a number per period: "demandes par semaine". */
  var PER = {daily: "par jour", weekly: "par semaine", quarterly: "par trimestre"};

  function unitOf(ind) {
    return ind.count && ind.aggregation === "sum" && PER[ind.frequency] ? ind.unit + " " + PER[ind.frequency] : ind.unit;
  }

  function say(id, text) { document.getElementById(id).textContent = V.sentence(text); }

  function empty(div, text, metaId) {
    div.dataset.drawn = "empty";
    div.hidden = true;
    if (metaId) { say(metaId, text); }
  }

  function done(div) {
    div.dataset.drawn = "1";
    V.markFirstChart();
  }

  function digits(values) {
    var finite = values.filter(function (v) { return v !== null; });
    var top = finite.length ? Math.max.apply(null, finite.map(Math.abs)) : 0;
    return top >= 100 ? 0 : 1;
  }

  function observedText(obs) {
    if (!obs.available) { return "pas d'observation : " + obs.reason; }
    var parts = ["observé du " + V.date(obs.dates[0]) + " au " + V.date(obs.dates[obs.dates.length - 1]) +
                 " — " + (obs.source || "source non précisée") + (obs.licence ? ", " + obs.licence : "") +
                 " ; version des données " + V.vintageDate(obs.vintage_id)];
    if (obs.suppressed) {
      parts.push(obs.suppressed + " valeur(s) masquée(s) (confidentialité : effectifs inférieurs à " + obs.threshold +
                 ", ou valeurs qui permettraient de les retrouver par différence)");
    }
    return parts.join(" ; ");
  }

  function forecastText(fc, horizons) {
    if (!fc.available) { return "pas de prévision : " + fc.reason; }
    var text = "prévision du " + V.date(fc.forecast_date) + ", " + V.modelLabel(fc.model, fc.model_version) +
               " (données " + V.vintageDate(fc.vintage_id) + ")";
    if (horizons && horizons.length) { text += ", " + horizons.join(", "); }
    if (fc.suppressed) { text += " ; prévisions de petits effectifs masquées"; }
    return text;
  }

  /* Latest value, per 100,000 inhabitants, and how much of the EPCI the sum covers. */
  function figuresText(ind) {
    var obs = ind.observed;
    if (!obs.available) { return ""; }
    var last = obs.last, parts = [];
    var d = digits(obs.values);
    if (last.value === null) {
      parts.push("Dernière valeur, au " + V.date(last.date) + " : masquée (confidentialité)");
    } else {
      parts.push("Dernière valeur, au " + V.date(last.date) + " : " + V.num(last.value, d) + " " + ind.unit);
    }
    if (last.per_100k !== null && last.per_100k !== undefined) {
      parts.push("soit " + V.num(last.per_100k, 1) + " pour 100\u202f000 habitants");
    }
    var cov = obs.coverage;
    if (cov && cov.members) {
      parts.push(cov.partial
        ? "somme partielle : " + cov.reporting + " commune(s) sur " + V.num(cov.members) +
          " déclarent cet indicateur, " + V.num(100 * cov.population_share, 1) +
          " % de la population de l'intercommunalité (le taux pour 100\u202f000 habitants porte sur leur population)"
        : "somme des " + V.num(cov.members) + " communes de l'intercommunalité (toute sa population)");
    }
    return parts.join(" ; ");
  }

  function verdictText(verdict, fc) {
    if (verdict && verdict.text) { return verdict.text; }
    if (!fc.available && fc.code === "no_target") {
      return "Sans prévision, pas de comparaison avec la méthode naïve.";
    }
    return "Vigie n'a pas encore comparé ses prévisions de cet indicateur à la méthode naïve " +
           "(bilan rétrospectif pas encore calculé).";
  }

  function ownPanel(ind, i) {
    var node = document.getElementById("own-template").content.firstElementChild.cloneNode(true);
    var key = "own-" + i;
    node.id = "panel-" + key;
    node.dataset.indicator = ind.indicator;
    node.setAttribute("aria-labelledby", "title-" + key);
    var h = node.querySelector("h3");
    h.id = "title-" + key;
    h.textContent = ind.label + " ";
    var small = document.createElement("small");
    small.textContent = "(" + unitOf(ind) + ")";
    h.appendChild(small);
    var chart = node.querySelector(".chart");
    chart.id = "chart-" + key;
    chart.setAttribute("aria-label", ind.label + " : observations et prévision");
    node.querySelector(".figures").textContent = figuresText(ind);
    var verdict = node.querySelector(".verdict");
    verdict.textContent = verdictText(ind.verdict, ind.forecast);
    if (ind.verdict && ind.verdict.status) { verdict.dataset.status = ind.verdict.status; }
    node.querySelector(".meta").textContent =
      V.sentence(observedText(ind.observed) + " ; " + forecastText(ind.forecast, ind.horizons));
    node.querySelector("button.dl-own").dataset.key = key;
    own[key] = ind;
    document.getElementById("own-panels").appendChild(node);
    return node;
  }

  function drawOwn(ind, i) {
    var node = ownPanel(ind, i), div = node.querySelector(".chart");
    if (!ind.observed.available && !ind.forecast.available) {
      empty(div);
      return Promise.resolve();
    }
    return V.fanChart(div, {observed: ind.observed, forecast: ind.forecast, unit: unitOf(ind),
                            filename: "vigie_" + code + "_" + ind.indicator,
                            window: V.WINDOW_DAYS[ind.frequency] || 364}).then(function () { done(div); });
  }

  function drawIncidence(inc) {
    var div = document.getElementById("chart-incidence");
    if (!inc.available) { empty(div, inc.reason, "meta-incidence"); return Promise.resolve(); }
    var traces = inc.series.map(function (s, k) {
      return {x: s.dates, y: s.values, mode: "lines", name: s.label, connectgaps: false,
              line: {color: k === 0 ? "#1b1b1b" : V.COLORS[k], width: 2}, meta: s.indicator,
              hovertemplate: s.label + " : %{y:,.0f}<extra></extra>"};
    });
    var first = inc.series[0];
    say("meta-incidence", "Taux publié pour " + inc.name + " (" + inc.territory + ") : " + observedText(first));
    return Plotly.newPlot(div, traces, V.baseLayout(inc.unit), V.plotConfig("vigie_" + code + "_incidence"))
      .then(function () { done(div); });
  }

  function alertText(alert) {
    if (!alert.available) { return "Alerte de capacité en réanimation : " + alert.reason; }
    return alert.message;
  }

  function drawPressure(pr) {
    if (!pr.available) {
      say("alert-line", pr.reason);
      ["hosp", "icu"].forEach(function (k) { empty(document.getElementById("chart-" + k), pr.reason, "meta-" + k); });
      return Promise.resolve();
    }
    document.getElementById("pressure-name").textContent = pr.name + " (" + pr.territory + ")";
    say("alert-line", alertText(pr.alert));
    return V.sequence(pr.panels, function (p) {
      var div = document.getElementById("chart-" + p.key);
      var text = observedText(p.observed) + " ; " + forecastText(p.forecast);
      if (p.capacity) {
        text += " ; " + p.capacity.label + " : " + V.num(p.capacity.value) + " au " + V.date(p.capacity.date);
      } else if (p.key === "hosp") {
        text += " ; Vigie ne dispose pas de la capacité en lits d'hospitalisation conventionnelle : pas de ligne de capacité";
      }
      say("meta-" + p.key, text);
      if (!p.observed.available && !p.forecast.available) { empty(div); return null; }
      return V.fanChart(div, {observed: p.observed, forecast: p.forecast, unit: p.unit,
                              capacity: p.capacity, capacityLabel: p.capacity && p.capacity.label,
                              filename: "vigie_" + pr.territory + "_" + p.key, window: 182})
        .then(function () { done(div); });
    });
  }

  function drawUnemployment(un) {
    var div = document.getElementById("chart-unemployment");
    if (!un.available) {
      empty(div, un.reason, "meta-unemployment");
      return Promise.resolve();
    }
    document.getElementById("verdict-unemployment").textContent = verdictText(un.verdict, un.forecast);
    if (un.verdict && un.verdict.status) {
      document.getElementById("verdict-unemployment").dataset.status = un.verdict.status;
    }
    say("meta-unemployment", un.name + " (" + un.territory + ") : " + observedText(un.observed) +
        " ; " + forecastText(un.forecast, un.horizons));
    if (!un.observed.available && !un.forecast.available) { empty(div); return Promise.resolve(); }
    return V.fanChart(div, {observed: un.observed, forecast: un.forecast, unit: un.unit,
                            filename: "vigie_" + un.territory + "_chomage", window: 3650})
      .then(function () { done(div); });
  }

  /* Population, communes and, for an EPCI across départements, a link to each of them. */
  function facts(t, el) {
    var parts = [];
    if (t.population !== null && t.population !== undefined) {
      parts.push(V.num(t.population) + " habitants (population légale INSEE)");
    }
    if (t.communes) { parts.push(V.num(t.communes) + " communes"); }
    el.textContent = parts.length ? V.sentence(parts.join(", ")) + " " : "";
    if (t.departements && t.departements.length > 1) {
      el.appendChild(document.createTextNode("Ses communes sont dans les départements "));
      t.departements.forEach(function (d, i) {
        var a = document.createElement("a");
        a.href = "/territoire/" + encodeURIComponent(d);
        a.textContent = d;
        if (i) { el.appendChild(document.createTextNode(i === t.departements.length - 1 ? " et " : ", ")); }
        el.appendChild(a);
      });
      el.appendChild(document.createTextNode(" (pression hospitalière : celui qui en compte la plus grande part)."));
    }
  }

  document.addEventListener("click", function (ev) {
    var b = ev.target.closest("button.dl-own");
    if (!b) { return; }
    var ind = own[b.dataset.key], rows = [], obs = ind.observed, fc = ind.forecast;
    if (obs.available) {
      obs.dates.forEach(function (d, i) {
        rows.push([V.date(d), code, "observé", obs.values[i], obs.per_100k[i], "", "", "", "", ""]);
      });
    }
    if (fc.available) {
      fc.dates.forEach(function (d, i) {
        rows.push([V.date(d), code, "prévision, " + V.modelLabel(fc.model, fc.model_version), "", "",
                   fc.q05[i], fc.q25[i], fc.q50[i], fc.q75[i], fc.q95[i]]);
      });
    }
    V.downloadCSV("vigie_" + code + "_" + ind.indicator,
                  ["date", "territoire", "série", "valeur observée", "pour 100\u202f000 habitants",
                   "quantile 5 %", "quantile 25 %", "médiane", "quantile 75 %", "quantile 95 %"], rows);
  });

  V.load("/tableau/donnees/ville/" + encodeURIComponent(code)).then(function (data) {
    facts(data.territory, document.getElementById("city-more"));
    var n = data.indicators.length;
    say("own-status", n ? n + " indicateur(s) publié(s) pour ce territoire"
      : "Aucun indicateur propre n'est publié pour ce territoire : une ville peut déposer les siens " +
        "dans le format partagé de Vigie (voir Méthodes et données)");
    return V.sequence(data.indicators, drawOwn).then(function () {
      return drawIncidence(data.incidence);
    }).then(function () {
      return drawPressure(data.pressure);
    }).then(function () {
      return drawUnemployment(data.unemployment);
    }).then(function () {
      root.dataset.ready = "1";
      if (!V.firstChartAt) { V.noFirstChart(); }
    });
  }).catch(function (err) {
    V.noFirstChart();
    say("own-status", "Erreur de chargement : " + V.errorFr(err));
    root.dataset.ready = "error";
  });
})();
