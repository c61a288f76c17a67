// edgeshelf console: progressive enhancement only. Every page works without this file; it adds
// auto-refresh of [data-refresh] regions, TTL countdowns, confirmation of [data-confirm] forms and
// an upload with a progress bar for [data-upload] forms.
(function () {
  "use strict";
  var csrf = function () {
    var f = document.querySelector('input[name="_csrf"]');
    return f ? f.value : "";
  };

  // Auto-refresh: fetch the fragment and swap it in, keeping focus where it was when possible.
  document.querySelectorAll("[data-refresh]").forEach(function (el) {
    var every = Math.max(2, Number(el.getAttribute("data-interval") || 10)) * 1000;
    var timer = setInterval(function () {
      if (document.hidden) return;
      fetch(el.getAttribute("data-refresh"), { headers: { accept: "text/html" }, credentials: "same-origin" })
        .then(function (r) { if (r.redirected || !r.ok) throw new Error(String(r.status)); return r.text(); })
        .then(function (html) {
          var tpl = document.createElement("template");
          tpl.innerHTML = html.trim();
          var next = tpl.content.firstElementChild;
          if (!next) return;
          var active = document.activeElement && document.activeElement.id;
          el.replaceWith(next);
          next.setAttribute("data-refreshed", new Date().toISOString());
          el = next;
          if (active && document.getElementById(active)) document.getElementById(active).focus();
        })
        .catch(function () { clearInterval(timer); });
    }, every);
  });

  // TTL countdowns: <time data-countdown="<epoch ms>">.
  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-countdown]").forEach(function (t) {
      var left = Math.max(0, Math.round((Number(t.getAttribute("data-countdown")) - now) / 1000));
      var m = Math.floor(left / 60), s = left % 60;
      t.textContent = left === 0 ? "expired" : m + ":" + (s < 10 ? "0" : "") + s;
    });
  }
  tick();
  setInterval(tick, 1000);

  // Confirmation before destructive posts (the server does not depend on it).
  document.addEventListener("submit", function (e) {
    var form = e.target;
    var msg = form.getAttribute && form.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) e.preventDefault();
  });

  // Uploads: stream the chosen file with a progress bar, then show the import's result page.
  document.querySelectorAll("form[data-upload]").forEach(function (form) {
    form.addEventListener("submit", function (e) {
      var input = form.querySelector('input[type="file"]');
      if (!input || !input.files || !input.files[0]) return;
      e.preventDefault();
      var file = input.files[0];
      var bar = document.getElementById(form.getAttribute("data-progress"));
      var status = document.getElementById(form.getAttribute("data-status"));
      var type = /\.csv$/i.test(file.name) ? "text/csv" : "application/x-ndjson";
      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.getAttribute("data-upload"));
      xhr.setRequestHeader("content-type", type);
      xhr.setRequestHeader("x-csrf-token", csrf());
      xhr.setRequestHeader("accept", "application/json");
      xhr.upload.onprogress = function (ev) {
        if (!ev.lengthComputable) return;
        bar.max = ev.total; bar.value = ev.loaded;
        status.textContent = "Uploading: " + Math.round((ev.loaded / ev.total) * 100) + "%";
      };
      xhr.upload.onload = function () { status.textContent = "Uploaded; validating and publishing…"; };
      xhr.onload = function () {
        var body = {};
        try { body = JSON.parse(xhr.responseText); } catch (err) { /* shown below */ }
        if (xhr.status >= 200 && xhr.status < 300 && body.import_id) {
          bar.value = bar.max;
          status.textContent = "Done: " + body.accepted + " accepted, " + body.rejected_count + " rejected.";
          window.location.assign("/console/imports/" + encodeURIComponent(body.import_id));
        } else {
          status.textContent = "Import failed: " + (body.detail || xhr.status);
        }
      };
      xhr.onerror = function () { status.textContent = "Upload failed (network)."; };
      xhr.send(file);
    });
  });
})();
