// The questionnaire of a review packet: answers kept in the browser's localStorage,
// required answers checked, and a JSON or CSV answer file downloaded on export.
// Works from a local file with no network (no external script or style sheet).
(function () {
  "use strict";
  var info = JSON.parse(document.getElementById("packet-data").textContent);
  var storeKey = "blinded-review:" + info.packet + ":" + info.reviewer;
  var state = {};
  try {
    state = JSON.parse(window.localStorage.getItem(storeKey) || "{}") || {};
  } catch (err) {
    state = {};
  }

  function save() {
    try {
      window.localStorage.setItem(storeKey, JSON.stringify(state));
    } catch (err) {
      setMessage("Answers cannot be kept in this browser (" + err + "); export them " +
                 "before closing the page.", "error");
    }
  }

  function setMessage(text, kind) {
    var el = document.getElementById("message");
    el.textContent = text;
    el.className = kind || "";
  }

  function answersOf(code) {
    if (!state[code]) { state[code] = {}; }
    return state[code];
  }

  function missingFields(code) {
    var a = state[code] || {};
    return info.required.filter(function (f) { return !a[f]; });
  }

  function refreshProgress() {
    var done = 0;
    info.cases.forEach(function (code) {
      var complete = missingFields(code).length === 0;
      if (complete) { done += 1; }
      var link = document.getElementById("nav-" + code);
      if (link) { link.className = complete ? "done" : ""; }
      var box = document.getElementById("questions-" + code);
      if (box && complete) { box.classList.remove("missing"); }
    });
    document.getElementById("progress").textContent =
      done + " of " + info.cases.length + " cases answered";
  }

  function restore() {
    info.cases.forEach(function (code) {
      var a = state[code] || {};
      info.required.forEach(function (field) {
        if (!a[field]) { return; }
        var selector = 'input[name="' + code + "." + field + '"][value="' + a[field] + '"]';
        var input = document.querySelector(selector);
        if (input) { input.checked = true; }
      });
      var box = document.querySelector('textarea[name="' + code + '.comment"]');
      if (box && a.comment) { box.value = a.comment; }
    });
  }

  function onEdit(event) {
    var el = event.target;
    if (!el.name || el.name.indexOf(".") < 0) { return; }
    var parts = el.name.split(".");
    var a = answersOf(parts[0]);
    if (el.type === "radio") {
      if (!el.checked) { return; }
      a[parts[1]] = el.value;
    } else {
      a[parts[1]] = el.value;
    }
    save();
    refreshProgress();
  }

  function collect() {
    var missing = [];
    info.cases.forEach(function (code) {
      if (missingFields(code).length) { missing.push(code); }
    });
    if (missing.length) {
      missing.forEach(function (code) {
        document.getElementById("questions-" + code).classList.add("missing");
      });
      setMessage("Not exported: answer every question of case(s) " + missing.join(", ") +
                 " (marked in red).", "error");
      document.getElementById("case-" + missing[0]).scrollIntoView();
      return null;
    }
    return info.cases.map(function (code) {
      var a = state[code];
      var row = { "case": code };
      info.required.forEach(function (f) { row[f] = a[f]; });
      row.comment = a.comment || "";
      return row;
    });
  }

  function download(name, text, type) {
    var blob = new Blob([text], { type: type });
    var link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = name;
    document.body.appendChild(link);
    link.click();
    window.setTimeout(function () {
      URL.revokeObjectURL(link.href);
      link.remove();
    }, 2000);
  }

  function csvCell(value) {
    var s = String(value === undefined || value === null ? "" : value);
    return /[",\n\r]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }

  function exportJson() {
    var answers = collect();
    if (!answers) { return; }
    var doc = {
      format: info.format, version: info.version, reviewer: info.reviewer,
      packet: info.packet, exported: new Date().toISOString(), answers: answers
    };
    download(info.file_stem + ".json", JSON.stringify(doc, null, 1), "application/json");
    setMessage("Exported " + info.file_stem + ".json: send this file back.", "ok");
  }

  function exportCsv() {
    var answers = collect();
    if (!answers) { return; }
    var cols = ["reviewer", "packet", "case"].concat(info.required, ["comment"]);
    var lines = [cols.join(",")];
    answers.forEach(function (row) {
      var full = Object.assign({ reviewer: info.reviewer, packet: info.packet }, row);
      lines.push(cols.map(function (c) { return csvCell(full[c]); }).join(","));
    });
    download(info.file_stem + ".csv", lines.join("\r\n") + "\r\n", "text/csv");
    setMessage("Exported " + info.file_stem + ".csv: send this file back.", "ok");
  }

  restore();
  refreshProgress();
  document.addEventListener("change", onEdit);
  document.addEventListener("input", onEdit);
  document.getElementById("export-json").addEventListener("click", exportJson);
  document.getElementById("export-csv").addEventListener("click", exportCsv);
}());
