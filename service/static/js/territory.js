/* Territoire: one fan chart per panel, with vintage, model version and downloads. */
(function () {
  "use strict";
  var V = window.Vigie;
  var code = document.getElementById("panels").dataset.code;
  var panels = {};

  /* The latest observation with a rate per 100,000 inhabitants (counts that add up), or null. */
  function lastRate(obs) {
    if (!obs.per_100k) { return null; }
    for (var i = obs.values.length - 1; i >= 0; i--) {
      if (obs.per_100k[i] !== null && obs.values[i] !== null) {
        return {date: obs.dates[i], value: obs.values[i], per_100k: obs.per_100k[i]};
      }
    }
    return null;
  }

  function metaText(p) {
    var parts = [], obs = p.observed, fc = p.forecast;
    if (p.territory !== code) { parts.push("Donnée publiée pour " + p.territory_name + " (" + p.territory + ")"); }
    if (obs.available) {
      parts.push("observé jusqu'au " + V.date(obs.dates[obs.dates.length - 1]) + " — " + obs.source +
                 ", " + obs.licence + " ; version des données " + V.vintageDate(obs.vintage_id));
      if (obs.suppressed) {
        // Not only counts under the threshold: values that would give one back (a stock
        // rebuilt from a hidden flow, a complementary cell) are hidden too.
        parts.push(obs.suppressed + " valeur(s) masquée(s) (confidentialité : effectifs inférieurs à " +
                   obs.threshold + ", ou valeurs qui permettraient de les retrouver par différence)");
      }
      var rate = lastRate(obs);
      if (rate) {
        parts.push("dernière valeur au " + V.date(rate.date) + " : " + V.num(rate.value) + ", soit " +
                   V.num(rate.per_100k, 1) + " pour 100\u202f000 habitants");
      }
      if (obs.coverage && obs.coverage.partial) {
        parts.push("somme partielle : " + obs.coverage.reporting + " commune(s) sur " + V.num(obs.coverage.members) +
                   ", " + V.num(100 * obs.coverage.population_share, 1) + " % de la population");
      }
    } else {
      parts.push("pas d'observation : " + obs.reason);
    }
    if (fc.available) {
      parts.push("prévision du " + V.date(fc.forecast_date) + ", " +
                 V.modelLabel(fc.model, fc.model_version) + " (données " + V.vintageDate(fc.vintage_id) + ")");
      if (fc.suppressed) { parts.push("prévisions de petits effectifs masquées"); }
    } else {
      parts.push("pas de prévision : " + fc.reason);
    }
    if (p.capacity) {
      parts.push(p.capacity_label + " : " + V.num(p.capacity.value) + " au " + V.date(p.capacity.date));
    } else if (p.capacity_note) {
      parts.push(p.capacity_note);
    }
    return parts.join(" ; ") + ".";
  }

  function csvRows(p) {
    var rows = [], obs = p.observed, fc = p.forecast;
    if (obs.available) {
      obs.dates.forEach(function (d, i) {
        rows.push([V.date(d), p.territory, "observé", obs.values[i], "", "", "", "", ""]);
      });
    }
    if (fc.available) {
      fc.dates.forEach(function (d, i) {
        rows.push([V.date(d), p.territory, "prévision, " + V.modelLabel(fc.model, fc.model_version), "",
                   fc.q05[i], fc.q25[i], fc.q50[i], fc.q75[i], fc.q95[i]]);
      });
    }
    return rows;
  }

  function draw(p, first) {
    var div = document.getElementById("chart-" + p.key);
    var drawn = V.fanChart(div, {observed: p.observed, forecast: p.forecast, unit: p.unit,
                                 capacity: p.capacity, capacityLabel: p.capacity_label,
                                 filename: "vigie_" + code + "_" + p.key,
                                 window: p.window || (p.key === "admissions" || p.key === "er" ? 364 : 182)});
    document.getElementById("meta-" + p.key).textContent = metaText(p);
    document.getElementById("verdict-" + p.key).textContent = p.verdict || "";
    document.querySelectorAll("#panel-" + p.key + " button").forEach(function (b) { b.disabled = false; });
    return drawn.then(function () {
      div.dataset.drawn = "1";
      if (first) { V.markFirstChart(); }
    });
  }

  document.addEventListener("click", function (ev) {
    var b = ev.target.closest("button.dl-csv, button.dl-png");
    if (!b) { return; }
    var p = panels[b.dataset.panel];
    var name = "vigie_" + code + "_" + p.key;
    if (b.classList.contains("dl-csv")) {
      V.downloadCSV(name, ["date", "territoire", "série", "valeur observée", "quantile 5 %",
                           "quantile 25 %", "médiane", "quantile 75 %", "quantile 95 %"], csvRows(p));
    } else {
      Plotly.downloadImage(document.getElementById("chart-" + p.key),
                           {format: "png", filename: name, width: 1100, height: 520});
    }
  });

  /* « Autres prévisions »: any other target forecast for this territory, one at a time. */
  function drawOther(choice) {
    var meta = document.getElementById("meta-other");
    meta.textContent = "Chargement…";
    return V.load("/tableau/donnees/territoire/" + encodeURIComponent(code) + "/prevision?cible=" +
                  encodeURIComponent(choice.target) + "&frequence=" + encodeURIComponent(choice.frequency))
      .then(function (view) {
        var p = {key: "other", territory: code, observed: view.observed, forecast: view.forecast,
                 unit: view.unit, verdict: view.verdict ? view.verdict.text : "",
                 window: V.WINDOW_DAYS[view.frequency] || 364};
        panels.other = p;
        document.getElementById("unit-other").textContent = view.unit ? "(" + view.unit + ")" : "";
        return draw(p, false);
      }).catch(function (err) {
        meta.textContent = "Erreur de chargement : " + V.errorFr(err) + ".";
      });
  }

  function offerOthers(others) {
    if (!others || !others.length) { return; }
    var select = document.getElementById("other-target");
    others.forEach(function (c, i) {
      var option = document.createElement("option");
      option.value = String(i);
      option.textContent = c.label + " (" + c.frequency_fr + ")";
      select.appendChild(option);
    });
    select.addEventListener("change", function () { drawOther(others[Number(select.value)]); });
    document.getElementById("panel-other").hidden = false;
    return drawOther(others[0]);
  }

  /* One chart after the other, admissions first: the signals (signals.js) wait for it. */
  V.load("/tableau/donnees/territoire/" + encodeURIComponent(code)).then(function (data) {
    data.panels.forEach(function (p) { panels[p.key] = p; });
    return V.sequence(data.panels, function (p, i) { return draw(p, i === 0); })
      .then(function () { return offerOthers(data.others); });
  }).catch(function (err) {
    V.noFirstChart();
    document.querySelectorAll(".panel:not(.signal) .meta").forEach(function (m) {
      m.textContent = "Erreur de chargement : " + V.errorFr(err) + ".";
    });
  });
})();
