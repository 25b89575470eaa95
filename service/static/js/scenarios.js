/* Scénarios: library for all; runs and comparison for analysts; editor and runs for planners.
   The API enforces the roles; this page only avoids showing controls that would be refused. */
(function () {
  "use strict";
  var V = window.Vigie;
  var TITLES = {};
  document.querySelectorAll("#library li").forEach(function (li) {
    TITLES[li.dataset.name] = li.querySelector(".lib-title").textContent;
  });
  var STATUS_FR = {queued: "en file d'attente", running: "en cours", ok: "terminé",
                   failed: "échec", interrupted: "interrompu", coalesced: "regroupé"};
  var shown = [];          // run ids drawn in the comparison (newest first)
  var results = {};        // run id → run (with summary)
  var explained = {};      // run id → promise of its French explanation (R actuel, leviers)

  function explain(id) {
    if (!explained[id]) {
      explained[id] = V.fetchJSON("/tableau/donnees/execution/" + id).catch(function (err) {
        return {available: false, reason: V.errorFr(err)};
      });
    }
    return explained[id];
  }

  /* For each run compared: where R actuel came from in this territory, and the levers used. */
  function drawExplanations(ids, territory, answers) {
    var box = document.getElementById("compare-r");
    box.innerHTML = "<h3>R actuel : d'où il vient, et leviers utilisés</h3>" + ids.map(function (id, k) {
      var a = answers[k], t = a.available ? a.territories[territory] : null;
      var head = "<h4>" + V.esc(runLabel(results[id])) + "</h4>";
      if (!t) {
        return "<div class=\"run-r\" data-run=\"" + id + "\">" + head + "<p>Explication indisponible" +
          (a.reason ? " : " + V.esc(a.reason) : "") + ".</p></div>";
      }
      var levers = t.levers.length ? "<ul class=\"levers\">" + t.levers.map(function (l) {
        return "<li>" + V.esc(l) + "</li>";
      }).join("") + "</ul>" : "<p class=\"levers\">Leviers : aucun (ni vaccination ni variant ; " +
        "seules les mesures du scénario changent R).</p>";
      return "<div class=\"run-r\" data-run=\"" + id + "\" data-basis=\"" + V.esc(t.basis) + "\">" + head +
        "<p>" + V.esc(t.text) + "</p><p>R actuel : " + V.esc(t.r_now) +
        " ; R estimé sur les seules hospitalisations : " + V.esc(t.r_now_admissions) +
        " (il décrit les contaminations d'environ 10 à 14 jours plus tôt).</p>" +
        (t.levers.length ? "<p>Leviers :</p>" : "") + levers + "</div>";
    }).join("");
    box.hidden = !ids.length;
  }

  function runLabel(run) {
    return (TITLES[run.scenario] || run.scenario || "définition modifiée") + " n° " + run.run_id;
  }

  function mountPlanner() {
    var slot = document.getElementById("planner-slot");
    slot.appendChild(document.getElementById("planner-controls").content.cloneNode(true));
    document.querySelectorAll("#library li").forEach(function (li) {
      var id = "pick-" + li.dataset.name;
      li.querySelector(".lib-check").innerHTML = "<input type=\"checkbox\" id=\"" + id + "\" value=\"" +
        V.esc(li.dataset.name) + "\">";
      var title = li.querySelector(".lib-title");
      var label = document.createElement("label");
      label.htmlFor = id; label.className = "lib-title"; label.textContent = title.textContent;
      title.replaceWith(label);
    });
    document.getElementById("run-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var names = Array.from(document.querySelectorAll("#library input:checked")).map(function (i) { return i.value; });
      if (!names.length) { progress("Cochez au moins un scénario.", false); return; }
      var territory = document.getElementById("run-territory").value;
      var typed = document.getElementById("run-asof").value.trim();
      var m = /^(\d{2})\/(\d{2})\/(\d{4})$/.exec(typed);
      if (typed && !m) { progress("Date de départ à écrire jj/mm/aaaa.", false); return; }
      var asOf = m ? m[3] + "-" + m[2] + "-" + m[1] : null;
      names.forEach(function (name) {
        V.fetchJSON("/tableau/donnees/scenario/" + encodeURIComponent(name)).then(function (def) {
          def.territories = [territory];
          var body = {definition: def};
          if (asOf) { body.as_of = asOf; }
          return submit(body, territory);
        }).catch(function (err) {
          progress("Scénario « " + (TITLES[name] || name) + " » refusé : " + V.errorFr(err) + ".", false);
        });
      });
    });
    document.getElementById("edit-load").addEventListener("click", function () {
      var name = document.getElementById("edit-from").value;
      V.fetchJSON("/tableau/donnees/scenario/" + encodeURIComponent(name)).then(function (def) {
        document.getElementById("edit-text").value = JSON.stringify(def, null, 2);
      });
    });
    document.getElementById("run-edited").addEventListener("click", function () {
      var msg = document.getElementById("edit-msg");
      var def;
      try { def = JSON.parse(document.getElementById("edit-text").value); }
      catch (e) { msg.textContent = "JSON invalide : " + e.message; return; }
      msg.textContent = "";
      var territory = (def.territories || ["FR"])[0];
      submit({definition: def}, territory).catch(function (err) {
        var details = (err.body && err.body.details && err.body.details.errors) || [];
        msg.textContent = "Définition refusée : " + (details.length ?
          details.map(V.schemaErrorFr).join(" ; ") : V.errorFr(err)) + ".";
      });
    });
  }

  function progress(text, busy) {
    var box = document.getElementById("progress-box");
    if (!box) { return; }
    box.hidden = false;
    document.getElementById("progress-text").textContent = text;
    document.getElementById("progress-bar").hidden = !busy;
  }

  function submit(body, territory) {
    return V.fetchJSON("/api/v1/scenarios/runs", {method: "POST", body: body}).then(function (run) {
      var started = Date.now();
      progress("Scénario n° " + run.run_id + " : " + STATUS_FR[run.status] + "…", true);
      return poll(run.run_id, started, territory);
    });
  }

  function poll(id, started, territory) {
    return new Promise(function (resolve, reject) {
      (function tick() {
        V.fetchJSON("/api/v1/scenarios/runs/" + id).then(function (run) {
          var secs = Math.round((Date.now() - started) / 1000);
          if (run.status === "queued" || run.status === "running") {
            progress("Scénario n° " + id + " : " + STATUS_FR[run.status] + " depuis " + secs + " s…", true);
            setTimeout(tick, 600);
            return;
          }
          if (run.status === "ok") {
            progress("Scénario n° " + id + " terminé en " + secs + " s.", false);
            results[id] = run;
            shown.unshift(id); shown = shown.slice(0, 4);
            setTerritories(run, territory);
            refreshRuns(); drawComparison();
            resolve(run);
          } else {
            progress("Scénario n° " + id + " : " + STATUS_FR[run.status] + (run.error ?
              " (le détail technique est dans le journal des traitements)" : "") + ".", false);
            refreshRuns();
            reject(new Error(run.status));
          }
        }).catch(reject);
      })();
    });
  }

  function setTerritories(run, preferred) {
    var select = document.getElementById("cmp-territory");
    var codes = Object.keys(run.summary || {});
    var have = Array.from(select.options).map(function (o) { return o.value; });
    codes.forEach(function (c) {
      if (have.indexOf(c) < 0) { select.add(new Option(c, c)); }
    });
    if (preferred && codes.indexOf(preferred) >= 0) { select.value = preferred; }
  }

  function drawComparison() {
    var territory = document.getElementById("cmp-territory").value;
    var indicator = document.getElementById("cmp-indicator").value;
    var ids = shown.filter(function (id) { return results[id] && (results[id].summary || {})[territory]; });
    var texts = Promise.all(ids.map(explain)).then(function (answers) {
      drawExplanations(ids, territory, answers);
      return answers;
    });
    return Promise.all(ids.map(function (id) {
      return V.fetchJSON("/api/v1/scenarios/runs/" + id + "/trajectories?per_page=1000&territory=" +
                         encodeURIComponent(territory) + "&indicator=" + indicator);
    })).then(function (answers) {
      var traces = [], capacity = null, tbody = [], end = null, start = null;
      answers.forEach(function (answer, k) {
        var run = results[ids[k]], byDate = {};
        answer.items.forEach(function (r) {
          (byDate[r.date] = byDate[r.date] || {})[r.quantile] = r.value;
        });
        var dates = Object.keys(byDate).sort();
        var pick = function (q) { return dates.map(function (d) { return byDate[d][q]; }); };
        var fc = {dates: dates, q05: pick(0.05), q25: pick(0.25), q50: pick(0.5), q75: pick(0.75), q95: pick(0.95)};
        traces = traces.concat(V.fanTraces(fc, V.COLORS[k % V.COLORS.length], runLabel(run), null));
        var all = (run.summary || {})[territory] || {}, s = all[indicator] || {};
        if (s.capacity) { capacity = s.capacity; }
        if (dates.length) {
          end = !end || dates[dates.length - 1] > end ? dates[dates.length - 1] : end;
          start = !start || dates[0] < start ? dates[0] : start;
        }
        var rNow = (all.r_now || {}).median, rAdm = (all.r_now_admissions || {}).median;
        tbody.push("<tr><td>" + V.esc(runLabel(run)) + "</td><td>" + V.date(run.as_of) + "</td><td class=\"num\">" +
                   (rNow === undefined ? "–" : V.num(rNow, 2)) + "</td><td class=\"num\">" +
                   (rAdm === undefined ? "–" : V.num(rAdm, 2)) + "</td><td class=\"num\">" +
                   V.num(s.peak) + "</td><td>" + V.date(s.peak_date) + "</td><td class=\"num\">" + V.num(s.capacity) +
                   "</td><td class=\"num\">" + (s.prob_exceed === undefined ? "–" : V.pct(s.prob_exceed)) + "</td></tr>");
      });
      if (capacity !== null && start) {
        traces.push({x: [start, end], y: [capacity, capacity], mode: "lines", meta: "capacity",
                     line: {color: V.CAPACITY_COLOR, width: 2, dash: "dot"},
                     name: "capacité : " + V.num(capacity) + " lits"});
      }
      var layout = V.baseLayout(indicator === "inc_hosp" ? "patients par jour" : "lits occupés");
      layout.height = 380;
      var div = document.getElementById("compare-chart");
      document.querySelector("#compare-table tbody").innerHTML = tbody.join("");
      return Promise.all([texts, Plotly.react(div, traces, layout, V.plotConfig("vigie_scenarios_" + territory))]).then(function () {
        div.dataset.drawn = ids.length ? "1" : "";
        div.dataset.runs = ids.join(",");
        if (ids.length) { V.markFirstChart(); }
      });
    });
  }

  function refreshRuns() {
    return V.fetchJSON("/api/v1/scenarios/runs?per_page=10").then(function (answer) {
      document.getElementById("runs-list").innerHTML = answer.items.map(function (run) {
        var cls = run.status === "ok" ? "status-ok" : (run.status === "failed" ? "status-failed" : "");
        var action = run.status === "ok" ? " <button type=\"button\" class=\"show-run\" data-id=\"" + run.run_id +
          "\">Comparer</button>" : "";
        // Public: what citizens see (the scenario alert); else a working run, seen by accounts only.
        var publicity = run.public ? " — <strong class=\"published\" title=\"Scénario de la bibliothèque " +
          "lancé par le service, ou publié par un administrateur : il alimente l'alerte publique\">publié</strong>" :
          (run.status === "ok" ? " — <span class=\"meta\">non publié" +
            (run.origin === "custom" ? ", définition personnalisée" : "") + "</span>" : "");
        return "<li>" + V.esc(runLabel(run)) + " — <span class=\"" + cls + "\">" + STATUS_FR[run.status] +
          "</span>" + publicity + ", soumis par " + V.esc(run.submitted_by || "?") + " le " + V.date(run.queued_at) +
          action + "</li>";
      }).join("") || "<li>Aucune exécution pour l'instant.</li>";
    });
  }

  function mountRuns() {
    var slot = document.getElementById("runs-slot");
    slot.innerHTML = "";
    slot.appendChild(document.getElementById("runs-controls").content.cloneNode(true));
    document.getElementById("cmp-territory").addEventListener("change", drawComparison);
    document.getElementById("cmp-indicator").addEventListener("change", drawComparison);
    document.getElementById("runs-list").addEventListener("click", function (ev) {
      var b = ev.target.closest("button.show-run");
      if (!b) { return; }
      var id = Number(b.dataset.id);
      V.fetchJSON("/api/v1/scenarios/runs/" + id).then(function (run) {
        results[id] = run;
        if (shown.indexOf(id) < 0) { shown.unshift(id); shown = shown.slice(0, 4); }
        setTerritories(run, null);
        drawComparison();
      });
    });
    refreshRuns();
  }

  V.ready.then(function (role) {
    var note = document.getElementById("access-note");
    if (V.has("planner")) {
      note.textContent = "Vous pouvez lancer et modifier des scénarios (" + V.ROLE_LABELS[role] + ").";
      mountRuns(); mountPlanner();
    } else if (V.has("analyst")) {
      note.textContent = "Vous pouvez consulter et comparer les scénarios ; les lancer demande un jeton planificateur.";
      mountRuns();
    } else {
      note.textContent = "Accès public : la bibliothèque est consultable ; lancer des scénarios et voir leurs résultats " +
        "demande un jeton (planificateur pour lancer).";
    }
  });
})();
