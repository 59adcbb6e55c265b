// hpchub console: start/stop through JupyterHub's REST API and live progress.
// Without JavaScript the page still works: Start is a link to the spawn page, Stop a form.
(function () {
  "use strict";
  var root = document.getElementById("hpc-console");
  if (!root) return;
  var xsrf = (window.jhdata && window.jhdata.xsrf_token) || "";
  var streams = {};

  function cellOf(name) { return document.getElementById("cell-" + name); }

  function setState(td, state, label, detail, isError) {
    td.dataset.state = state;
    var badge = td.querySelector(".hpc-state");
    if (badge) { badge.className = "hpc-state hpc-state-" + state; badge.textContent = label; }
    var p = td.querySelector(".hpc-detail");
    if (p) {
      p.textContent = detail || "";
      if (isError) { p.setAttribute("role", "alert"); } else { p.removeAttribute("role"); }
    }
    var active = ["starting", "queued", "running", "stopping"].indexOf(state) >= 0;
    td.querySelectorAll(".hpc-start").forEach(function (el) { el.classList.toggle("d-none", active); });
    var stop = td.querySelector(".hpc-stop-form");
    if (stop) stop.classList.toggle("d-none", !active || state === "stopping");
    var open = td.querySelector(".hpc-open");
    if (open) open.classList.toggle("d-none", state !== "running");
    var idle = td.querySelector(".hpc-idle");
    if (idle) idle.classList.toggle("d-none", state !== "running");
  }

  // Redraw cells from the server-rendered console (host, time left, errors). The page's
  // own URL: /hub/console/open/<path> draws the cells pointing at a link's path.
  function refreshCells(names) {
    return fetch(window.location.pathname + window.location.search, { credentials: "same-origin" })
      .then(function (r) { return r.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        names.forEach(function (name) {
          var fresh = doc.getElementById("cell-" + name);
          var td = cellOf(name);
          if (fresh && td) {
            td.replaceWith(document.importNode(fresh, true));
            bind(cellOf(name));
          }
        });
      });
  }

  function refreshCell(name) { return refreshCells([name]); }

  // Running servers that end at a known time: the cell's time left and its warning are the
  // server's words (hpchub.walltime); redraw it every minute, and at once when a warning
  // time (data-warnings, seconds before data-ends-at) is passed.
  var redrawing = false;
  function timeLeftTick() {
    if (redrawing) return;
    var now = Date.now() / 1000;
    var due = [];
    root.querySelectorAll("td.hpc-cell[data-ends-at]").forEach(function (td) {
      var left = Number(td.dataset.endsAt) - now;
      var passed = (td.dataset.warnings || "").split(" ").filter(function (w) {
        return w && left <= Number(w);
      }).length;
      if (passed !== Number(td.dataset.warned || 0) || now - Number(td.dataset.drawnAt || now) >= 60) {
        due.push(td.dataset.server);
      }
    });
    if (!due.length) return;
    redrawing = true;
    refreshCells(due).catch(function () {}).then(function () { redrawing = false; });
  }

  // Extend (hpchub.api): the cell's buttons POST the API; a refusal is shown in the cell.
  function extend(td, seconds) {
    var name = td.dataset.server;
    var old = td.querySelector(".hpc-extend-error");
    if (old) old.remove();
    td.querySelectorAll(".hpc-extend").forEach(function (b) { b.disabled = true; });
    api("POST", td.dataset.extendApi, { seconds: seconds })
      .then(function () { return refreshCell(name); })
      .catch(function (e) {
        var cell = cellOf(name);
        cell.querySelectorAll(".hpc-extend").forEach(function (b) { b.disabled = false; });
        var p = document.createElement("p");
        p.className = "hpc-extend-error small mb-1";
        p.setAttribute("role", "alert");
        p.textContent = "Not extended: " + e.message;
        cell.querySelector(".hpc-actions").before(p);
      });
  }

  // hpchub's spawners send the cell's state, label and detail with every progress event
  // (hpchub.serverstate): drawn as they are. Other spawners' events (Spin) carry a message.
  function describe(ev) {
    if (ev.state && ev.label) return { state: ev.state, label: ev.label, detail: ev.detail || ev.message || "" };
    return { state: "starting", label: "Starting", detail: ev.message || "" };
  }

  function follow(name) {
    if (streams[name]) return;
    var td = cellOf(name);
    // EventSource cannot send headers: JupyterHub takes the XSRF token as an argument
    // (without it every stream was refused with 403 and only the redraw caught up).
    var es = new EventSource(td.dataset.api + "/progress?_xsrf=" + encodeURIComponent(xsrf));
    streams[name] = es;
    es.onmessage = function (msg) {
      var ev = JSON.parse(msg.data);
      var cell = cellOf(name);
      if (ev.ready) {
        es.close(); delete streams[name];
        setState(cell, "running", "Running", "");
        // Started to follow a link (hpchub.console.links): continue to it in this server.
        if (root.dataset.openPath && cell.dataset.open) { window.location.assign(cell.dataset.open); return; }
        refreshCell(name);
      } else if (ev.failed) {
        es.close(); delete streams[name];
        setState(cell, "failed", "Failed", ev.message || "The server failed to start.", true);
        refreshCell(name); // the hub's own wording of the error, as after a reload
      } else {
        var d = describe(ev);
        setState(cell, d.state, d.label, d.detail);
      }
    };
    es.onerror = function () {
      // The stream ends when the spawn is over (or the hub restarts): redraw from the server.
      es.close(); delete streams[name];
      setTimeout(function () { refreshCell(name); }, 1000);
    };
  }

  function api(method, url, body) {
    return fetch(url, {
      method: method,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-XSRFToken": xsrf },
      body: body === undefined ? undefined : JSON.stringify(body),
    }).then(function (r) {
      if (r.ok) return r;
      return r.json().catch(function () { return {}; }).then(function (j) {
        throw new Error(j.message || r.status + " " + r.statusText);
      });
    });
  }

  function start(td) {
    var name = td.dataset.server;
    setState(td, "starting", "Starting", "Requesting…");
    // JupyterHub 6: the start body is {"user_options": {...}}.
    api("POST", td.dataset.api, { user_options: {} })
      .then(function () { follow(name); })
      .catch(function (e) { setState(td, "failed", "Failed", e.message, true); });
  }

  function stop(td) {
    var name = td.dataset.server;
    if (streams[name]) { streams[name].close(); delete streams[name]; }
    setState(td, "stopping", "Stopping", "");
    api("DELETE", td.dataset.api)
      .then(function waitGone() {
        // A cookie-authenticated fetch needs the XSRF token, or JupyterHub answers 403.
        return fetch(td.dataset.api.replace(/\/servers\/[^/]+$/, ""), {
          credentials: "same-origin",
          headers: { "X-XSRFToken": xsrf },
        })
          .then(function (r) { if (!r.ok) throw new Error(r.status + " " + r.statusText); return r.json(); })
          .then(function (u) {
            var s = (u.servers || {})[name];
            if (s && (s.ready || s.pending)) return new Promise(function (res) { setTimeout(res, 1000); }).then(waitGone);
          });
      })
      .then(function () { return refreshCell(name); })
      .catch(function (e) { setState(td, "failed", "Failed", e.message, true); });
  }

  function bind(td) {
    if (!td) return;
    var s = td.querySelector("[data-js-start]");
    if (s) s.addEventListener("click", function (e) { e.preventDefault(); start(td); });
    var f = td.querySelector(".hpc-stop-form");
    if (f) f.addEventListener("submit", function (e) { e.preventDefault(); stop(td); });
    var x = td.querySelector(".hpc-extend-form");
    if (x && td.dataset.extendApi) {
      x.addEventListener("submit", function (e) {
        e.preventDefault();
        extend(td, Number((e.submitter || x.querySelector(".hpc-extend")).value));
      });
    }
    td.dataset.drawnAt = String(Date.now() / 1000);
    if (td.dataset.state === "starting" || td.dataset.state === "queued") follow(td.dataset.server);
  }

  root.querySelectorAll("td.hpc-cell[data-server]").forEach(bind);
  setInterval(timeLeftTick, 5000);
})();
