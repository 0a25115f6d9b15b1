/* inhouse customer-service widget. Embed with one tag:
 *   <script src="https://ai.example.com/widget.js" data-key="ih_…(a key with scopes [apps:support])"
 *           data-collections="support" data-title="Help" async></script>
 * Plain JavaScript, no dependencies. Model text is only ever put into the page with textContent (never as HTML),
 * so an answer cannot inject markup. The key must be a scoped key: it is visible to every visitor of the page.
 * Styles go in through a constructed stylesheet where the browser has one, so a page whose Content-Security-Policy
 * forbids inline styles can embed it. Each reply is also dispatched on `window` as an "inhouse-support:reply" event
 * (detail: the reply, with `handoff`), so the host page can react to a handoff. */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || window.__inhouseSupportWidget) { return; }
  window.__inhouseSupportWidget = true;
  var base = new URL(script.src, window.location.href).origin;
  var key = script.getAttribute("data-key") || "";
  var collections = (script.getAttribute("data-collections") || "").split(",")
    .map(function (s) { return s.trim(); }).filter(Boolean);
  var title = script.getAttribute("data-title") || "Support";
  var storeKey = "inhouse-support-session:" + base;
  var sessionId = null;
  try { sessionId = window.sessionStorage.getItem(storeKey); } catch (e) { sessionId = null; }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text) { node.textContent = text; }
    return node;
  }

  var css = "#ih-support{position:fixed;right:16px;bottom:16px;z-index:2147483000;font:14px/1.4 system-ui,sans-serif}" +
    "#ih-support .ih-panel{display:none;width:320px;max-height:460px;background:#fff;border:1px solid #ccd;" +
    "border-radius:8px;box-shadow:0 4px 16px rgba(0,0,0,.2);flex-direction:column;overflow:hidden}" +
    "#ih-support.ih-open .ih-panel{display:flex}#ih-support .ih-log{flex:1;overflow:auto;padding:8px}" +
    "#ih-support .ih-msg{margin:4px 0;padding:6px 8px;border-radius:6px;white-space:pre-wrap}" +
    "#ih-support .ih-user{background:#e8f0fe;margin-left:32px}#ih-support .ih-bot{background:#f3f3f3;margin-right:32px}" +
    "#ih-support .ih-note{color:#8a4b00;font-size:12px}#ih-support .ih-cite{font-size:12px;color:#555}" +
    "#ih-support form{display:flex;border-top:1px solid #ccd}#ih-support input{flex:1;border:0;padding:8px}" +
    "#ih-support button{border:0;background:#1a56db;color:#fff;padding:8px 12px;cursor:pointer}" +
    "#ih-support .ih-toggle{border-radius:20px;margin-top:8px;float:right}";
  var sheet = null;  // a constructed stylesheet (not an inline <style>): allowed under style-src 'self'
  try {
    if (window.CSSStyleSheet && "adoptedStyleSheets" in document) {
      sheet = new CSSStyleSheet();
      sheet.replaceSync(css);
    }
  } catch (e) { sheet = null; }
  var style = sheet ? null : el("style", {}, css);
  var root = el("div", { id: "ih-support" });
  var panel = el("div", { "class": "ih-panel", role: "dialog", "aria-label": title });
  var header = el("div", { "class": "ih-msg ih-bot" }, title);
  var log = el("div", { "class": "ih-log", "aria-live": "polite" });
  var form = el("form", {});
  var input = el("input", { type: "text", maxlength: "2000", "aria-label": "Your message", autocomplete: "off" });
  var send = el("button", { type: "submit" }, "Send");
  var toggle = el("button", { type: "button", "class": "ih-toggle", "aria-expanded": "false" }, title);
  form.appendChild(input);
  form.appendChild(send);
  panel.appendChild(header);
  panel.appendChild(log);
  panel.appendChild(form);
  root.appendChild(panel);
  root.appendChild(toggle);

  function add(kind, text) {
    var node = el("div", { "class": "ih-msg " + kind }, text);
    log.appendChild(node);
    log.scrollTop = log.scrollHeight;
    return node;
  }

  function api(method, path, body) {
    return fetch(base + path, {
      method: method,
      headers: { "Authorization": "Bearer " + key, "Content-Type": "application/json" },
      body: body ? JSON.stringify(body) : undefined,
      credentials: "omit",
      mode: "cors"
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (data) {
        if (!r.ok) {
          var msg = (data && data.error && data.error.message) || ("HTTP " + r.status);
          var err = new Error(msg);
          err.status = r.status;
          throw err;
        }
        return data;
      });
    });
  }

  function ensureSession() {
    if (sessionId) { return Promise.resolve(sessionId); }
    return api("POST", "/v1/apps/support/sessions", collections.length ? { collections: collections } : {})
      .then(function (s) {
        sessionId = s.id;
        try { window.sessionStorage.setItem(storeKey, sessionId); } catch (e) { /* private mode */ }
        return sessionId;
      });
  }

  // The answers are Markdown; the widget renders only **bold** and `code` (as elements holding text), the
  // rest stays plain text: enough for short support answers, and still nothing is ever parsed as HTML.
  function appendInline(node, text) {
    String(text).split(/(\*\*[^*\n]+\*\*|`[^`\n]+`)/).forEach(function (part) {
      if (!part) { return; }
      if (part.length > 4 && part.slice(0, 2) === "**" && part.slice(-2) === "**") {
        node.appendChild(el("strong", {}, part.slice(2, -2)));
      } else if (part.length > 2 && part.charAt(0) === "`" && part.charAt(part.length - 1) === "`") {
        node.appendChild(el("code", {}, part.slice(1, -1)));
      } else {
        node.appendChild(document.createTextNode(part));
      }
    });
  }

  function showReply(reply) {
    var node = add("ih-bot", "");
    appendInline(node, reply.reply || "");
    node.setAttribute("data-role", "reply");
    (reply.citations || []).forEach(function (c) {
      var where = c.title + (c.section ? " > " + c.section : "") + (c.page_start ? " (p. " + c.page_start + ")" : "");
      node.appendChild(el("div", { "class": "ih-cite" }, "[" + c.index + "] " + where));
    });
    if (reply.handoff) {
      node.setAttribute("data-handoff", "true");
      add("ih-note", "A human agent will take over this conversation.");
    }
    try {
      window.dispatchEvent(new CustomEvent("inhouse-support:reply", { detail: reply }));
    } catch (e) { /* an old browser: no event */ }
  }

  function submit(text) {
    text = (text || "").trim();
    if (!text) { return Promise.resolve(null); }
    add("ih-user", text);
    send.disabled = true;
    return ensureSession()
      .then(function (id) {
        return api("POST", "/v1/apps/support/sessions/" + encodeURIComponent(id) + "/messages", { content: text })
          .catch(function (err) {
            if (err.status === 404) {  // the stored session is gone: start a new one and retry once
              sessionId = null;
              return ensureSession().then(function (nid) {
                return api("POST", "/v1/apps/support/sessions/" + encodeURIComponent(nid) + "/messages",
                  { content: text });
              });
            }
            throw err;
          });
      })
      .then(function (reply) { showReply(reply); return reply; })
      .catch(function (err) { add("ih-note", "Error: " + err.message).setAttribute("data-role", "error"); })
      .then(function (r) { send.disabled = false; return r; });
  }

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var text = input.value;
    input.value = "";
    submit(text);
  });
  var focusOnOpen = true;
  toggle.addEventListener("click", function () {
    var open = root.classList.toggle("ih-open");
    toggle.setAttribute("aria-expanded", open ? "true" : "false");
    if (open && focusOnOpen) { input.focus(); }
  });

  function mount() {
    if (sheet) { document.adoptedStyleSheets = document.adoptedStyleSheets.concat([sheet]); }
    else { document.head.appendChild(style); }
    document.body.appendChild(root);
  }
  if (document.body) { mount(); } else { document.addEventListener("DOMContentLoaded", mount); }
  // open({focus: false}) opens the panel without moving the keyboard focus into it (e.g. a preview on load).
  window.InhouseSupport = { send: submit, open: function (opts) {
    if (root.classList.contains("ih-open")) { return; }
    focusOnOpen = !(opts && opts.focus === false);
    toggle.click();
    focusOnOpen = true;
  } };
})();
