/* Vigie: Plotly in French and the fan chart (observations, 50 % and 90 % forecast bands). */
(function () {
  "use strict";
  var V = window.Vigie;
  Plotly.register({
    moduleType: "locale", name: "fr",
    dictionary: {"Autoscale": "Échelle automatique", "Zoom in": "Zoom avant",
                 "Zoom out": "Zoom arrière", "Reset axes": "Réinitialiser les axes",
                 "Download plot as a png": "Télécharger en PNG", "Pan": "Déplacer",
                 "Zoom": "Zoom", "Double-click to zoom back out": "Double-cliquez pour dézoomer"},
    format: {
      days: ["dimanche", "lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi"],
      shortDays: ["dim.", "lun.", "mar.", "mer.", "jeu.", "ven.", "sam."],
      months: ["janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août",
               "septembre", "octobre", "novembre", "décembre"],
      shortMonths: ["janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.",
                    "oct.", "nov.", "déc."],
      date: "%d/%m/%Y", decimal: ",", thousands: "\u202f"
    }
  });

  /* Okabe–Ito: distinguishable with the common colour-vision deficiencies. */
  V.COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9"];
  V.CAPACITY_COLOR = "#B2182B";

  V.plotConfig = function (filename) {
    return {locale: "fr", displaylogo: false, responsive: true,
            modeBarButtonsToRemove: ["lasso2d", "select2d", "autoScale2d"],
            toImageButtonOptions: {format: "png", filename: filename, width: 1100, height: 520}};
  };

  V.baseLayout = function (unit) {
    return {
      separators: ",\u202f", margin: {l: 64, r: 16, t: 12, b: 48}, height: 340,
      paper_bgcolor: "#ffffff", plot_bgcolor: "#ffffff",
      font: {family: "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", size: 13,
             color: "#1b1b1b"},
      xaxis: {type: "date", tickformat: "%d/%m/%Y", nticks: 7, gridcolor: "#e5e5e5",
              hoverformat: "%d/%m/%Y"},
      yaxis: {title: {text: unit || ""}, rangemode: "tozero", gridcolor: "#e5e5e5",
              tickformat: ",~r"},
      legend: {orientation: "h", y: -0.18, x: 0, traceorder: "normal"},
      hovermode: "x unified"
    };
  };

  function shift(iso, days) {
    var d = new Date(iso + "T00:00:00Z");
    d.setUTCDate(d.getUTCDate() + days);
    return d.toISOString().slice(0, 10);
  }
  V.shiftDate = shift;

  /* Band traces (90 % then 50 %) and the median of one forecast, starting from an anchor point. */
  V.fanTraces = function (fc, color, label, anchor) {
    var x = fc.dates.slice(), lo90 = fc.q05.slice(), hi90 = fc.q95.slice(),
        lo50 = fc.q25.slice(), hi50 = fc.q75.slice(), med = fc.q50.slice();
    if (anchor) {
      [x, lo90, hi90, lo50, hi50].forEach(function (a, i) { a.unshift(i === 0 ? anchor.date : anchor.value); });
      med.unshift(anchor.value);
    }
    var rgba = function (alpha) {
      var h = color.replace("#", "");
      return "rgba(" + parseInt(h.slice(0, 2), 16) + "," + parseInt(h.slice(2, 4), 16) + "," +
             parseInt(h.slice(4, 6), 16) + "," + alpha + ")";
    };
    var prefix = label ? label + " — " : "";
    var hidden = {width: 0, color: rgba(0)};
    return [
      {x: x, y: lo90, mode: "lines", line: hidden, hoverinfo: "skip", showlegend: false,
       name: prefix + "borne basse 90 %", meta: "band90-low"},
      {x: x, y: hi90, mode: "lines", line: hidden, fill: "tonexty", fillcolor: rgba(0.18),
       name: prefix + "intervalle à 90 %", meta: "band90",
       customdata: lo90, hovertemplate: "90 % : %{customdata:,.0f} – %{y:,.0f}<extra></extra>"},
      {x: x, y: lo50, mode: "lines", line: hidden, hoverinfo: "skip", showlegend: false,
       name: prefix + "borne basse 50 %", meta: "band50-low"},
      {x: x, y: hi50, mode: "lines", line: hidden, fill: "tonexty", fillcolor: rgba(0.38),
       name: prefix + "intervalle à 50 %", meta: "band50",
       customdata: lo50, hovertemplate: "50 % : %{customdata:,.0f} – %{y:,.0f}<extra></extra>"},
      {x: x, y: med, mode: "lines+markers", line: {color: color, width: 2, dash: "dash"},
       marker: {size: 5}, name: prefix + "prévision centrale", meta: "median",
       hovertemplate: "prévision : %{y:,.0f}<extra></extra>"}
    ];
  };

  /* Observed series + forecast fan + capacity line. Returns the Plotly promise. */
  V.fanChart = function (div, spec) {
    var traces = [], obs = spec.observed, fc = spec.forecast, anchor = null, lastObs = null;
    if (obs && obs.available) {
      traces.push({x: obs.dates, y: obs.values, mode: "lines", name: "observé",
                   line: {color: "#1b1b1b", width: 2}, connectgaps: false, meta: "observed",
                   hovertemplate: "observé : %{y:,.0f}<extra></extra>"});
      lastObs = obs.dates[obs.dates.length - 1];
    }
    var end = lastObs;
    if (fc && fc.available) {
      /* The fan starts from the last observation before the forecast's first date, so that
         bands and curve join; an older forecast (shown after newer data) gets no anchor. */
      if (obs && obs.available) {
        for (var i = obs.values.length - 1; i >= 0; i--) {
          if (obs.values[i] !== null && obs.dates[i] < fc.dates[0]) {
            if (obs.dates[i] >= shift(fc.dates[0], -8)) { anchor = {date: obs.dates[i], value: obs.values[i]}; }
            break;
          }
        }
      }
      traces = traces.concat(V.fanTraces(fc, spec.color || V.COLORS[0], "", anchor));
      var fcEnd = fc.dates[fc.dates.length - 1];
      end = !end || fcEnd > end ? fcEnd : end;
    }
    var layout = V.baseLayout(spec.unit);
    if (end) {
      var start = shift(lastObs || end, -(spec.window || 182));
      layout.xaxis.range = [start, shift(end, 4)];
    }
    if (spec.capacity && spec.capacity.value !== null && end) {
      var x0 = obs && obs.available ? obs.dates[0] : fc.dates[0];
      traces.push({x: [x0, shift(end, 4)], y: [spec.capacity.value, spec.capacity.value],
                   mode: "lines", line: {color: V.CAPACITY_COLOR, width: 2, dash: "dot"},
                   name: (spec.capacityLabel || "capacité") + " : " + V.num(spec.capacity.value),
                   meta: "capacity", hovertemplate: "capacité : %{y:,.0f}<extra></extra>"});
    }
    return Plotly.newPlot(div, traces, layout, V.plotConfig(spec.filename || "vigie"));
  };

  /* CSV in the French Excel dialect: ';' separator, decimal comma, UTF-8 BOM. Text starting
     with = + - @, tab or CR gets a leading apostrophe (never run as a formula), as in the
     API's CSV (service/csv_safety.py); numbers stay numbers. */
  V.downloadCSV = function (filename, header, rows) {
    var cell = function (v) {
      if (v === null || v === undefined) { return ""; }
      if (typeof v === "number") { return String(v).replace(".", ","); }
      var s = String(v);
      if (/^ *[=+\-@\t\r\n]/.test(s) && !/^ *[+-]?(\d+([.,]\d*)?|[.,]\d+)([eE][+-]?\d+)?$/.test(s)) {
        s = "'" + s;
      }
      return /[;"\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
    };
    var text = "\ufeff" + [header].concat(rows).map(function (r) {
      return r.map(cell).join(";");
    }).join("\r\n") + "\r\n";
    var url = URL.createObjectURL(new Blob([text], {type: "text/csv;charset=utf-8"}));
    var a = document.createElement("a");
    a.href = url; a.download = filename + ".csv";
    document.body.appendChild(a); a.click(); a.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 1000);
  };
})();
