/* The chat widget's loader: <script src="https://PLATFORM/widget.js" data-widget="wgt_…" async>.
   Prepares the frame when the browser is idle, shows the launcher once the frame is ready,
   and talks to the frame with postMessage (origins checked both ways). Styles are set through
   the CSSOM, so a host page with a strict CSP needs only script-src and frame-src for us.
   API: AgentWidget('identify', {id, hash, name, email}) | ('open') | ('close') | ('reset')
        | ('on', 'ready' | 'message' | 'unread', fn) */
(function () {
  var script = document.currentScript;
  if (!script || window.__agentWidget) return;
  window.__agentWidget = true;
  var id = script.getAttribute("data-widget");
  var base = new URL(script.src).origin;
  var queued = (window.AgentWidget && window.AgentWidget.q) || [];
  var frame, launcher, badge, ready = false, open = false, wanted = false, unread = 0, identity = null;
  var listeners = { ready: [], message: [], unread: [] };
  var phone = window.matchMedia("(max-width: 639px)");

  function css(el, rules) {
    for (var k in rules) el.style.setProperty(k, rules[k]);
  }
  function emit(name, value) {
    listeners[name].forEach(function (fn) {
      try { fn(value); } catch (e) { setTimeout(function () { throw e; }); }
    });
  }
  function post(message) {
    if (frame && frame.contentWindow) frame.contentWindow.postMessage(message, base);
  }
  // The frame's refresh token, kept on this site: a frame of another site may not keep storage.
  var key = "agent-widget:" + id;
  function remembered() {
    try { return localStorage.getItem(key); } catch (e) { return null; }
  }
  function init() {
    post({ type: "init", identity: identity, page_url: location.href, refresh_token: identity ? null : remembered() });
  }
  function place() {
    var side = launcher.getAttribute("data-side");
    var full = phone.matches;
    css(frame, {
      position: "fixed", "z-index": "2147483000", border: "0", background: "transparent",
      bottom: full ? "0" : "88px", top: full ? "0" : "auto",
      left: full || side === "left" ? (full ? "0" : "20px") : "auto",
      right: full || side !== "left" ? (full ? "0" : "20px") : "auto",
      width: full ? "100vw" : "min(380px, calc(100vw - 40px))",
      height: full ? "100dvh" : "min(600px, calc(100vh - 120px))",
      "border-radius": full ? "0" : "14px",
      "box-shadow": full ? "none" : "0 12px 40px rgba(0,0,0,.25)",
      display: open ? "block" : "none"
    });
    css(launcher, { display: open && full ? "none" : "flex" });
  }
  function setOpen(value) {
    wanted = value;
    if (!ready || open === value) return;
    open = value;
    launcher.setAttribute("aria-expanded", String(open));
    place();
    if (open) {
      unread = 0;
      badge.textContent = "";
      css(badge, { display: "none" });
      frame.focus();
      post({ type: "open" });
    } else {
      launcher.focus();
    }
  }
  function makeLauncher(config) {
    launcher = document.createElement("button");
    launcher.type = "button";
    launcher.setAttribute("aria-haspopup", "dialog");
    launcher.setAttribute("aria-expanded", "false");
    launcher.setAttribute("aria-label", config.label || "Open chat");
    launcher.setAttribute("data-side", config.position);
    launcher.textContent = config.label ? "\uD83D\uDCAC " + config.label : "\uD83D\uDCAC";
    css(launcher, {
      position: "fixed", "z-index": "2147483000", bottom: "20px",
      left: config.position === "left" ? "20px" : "auto",
      right: config.position === "left" ? "auto" : "20px",
      "align-items": "center", gap: "6px", padding: "12px 18px", border: "0",
      "border-radius": "999px", cursor: "pointer", background: config.color,
      color: config.text, font: "600 15px/1.2 system-ui, sans-serif",
      "box-shadow": "0 6px 20px rgba(0,0,0,.25)"
    });
    badge = document.createElement("span");
    css(badge, {
      display: "none", "min-width": "20px", padding: "2px 6px", "border-radius": "999px",
      background: "#b91c1c", color: "#fff", "font-size": "12px"
    });
    launcher.appendChild(badge);
    launcher.addEventListener("click", function () { setOpen(!open); });
    document.body.appendChild(launcher);
    phone.addEventListener("change", place);
    place();
  }
  function prepare() {
    if (frame) return;
    frame = document.createElement("iframe");
    frame.src = base + "/widget/" + encodeURIComponent(id) + "?origin=" + encodeURIComponent(location.origin);
    frame.title = "Chat";
    frame.setAttribute("allow", "clipboard-write");
    css(frame, { display: "none" });
    document.body.appendChild(frame);
  }
  window.addEventListener("message", function (e) {
    if (e.origin !== base || !frame || e.source !== frame.contentWindow) return;
    var data = e.data || {};
    if (data.type === "frame") {
      init();
    } else if (data.type === "keep") {
      try { localStorage.setItem(key, data.refresh_token); } catch (e) { /* private mode */ }
    } else if (data.type === "ready") {
      if (!ready) {
        ready = true;
        makeLauncher(data);
        if (wanted) setOpen(true);
      }
      emit("ready");
    } else if (data.type === "message") {
      emit("message", data.text);
      if (!open) {
        unread += 1;
        badge.textContent = String(unread);
        css(badge, { display: "inline-block" });
        emit("unread", unread);
      }
    } else if (data.type === "close") {
      setOpen(false);
    }
  });
  document.addEventListener("keydown", function (e) {
    if (e.key === "Escape" && open) setOpen(false);
  });
  function command(name, arg, fn) {
    if (name === "identify") {
      identity = arg || null;
      if (ready) init();
    } else if (name === "open") setOpen(true);
    else if (name === "close") setOpen(false);
    else if (name === "reset") {
      try { localStorage.removeItem(key); } catch (e) { /* private mode */ }
      post({ type: "reset" });
    }
    else if (name === "on" && listeners[arg]) listeners[arg].push(fn);
  }
  window.AgentWidget = command;
  queued.forEach(function (args) { command.apply(null, args); });
  if (!id) return;
  var start = function () {
    if (document.body) prepare();
    else document.addEventListener("DOMContentLoaded", prepare);
  };
  if (window.requestIdleCallback) requestIdleCallback(start, { timeout: 1500 });
  else setTimeout(start, 1);
})();
