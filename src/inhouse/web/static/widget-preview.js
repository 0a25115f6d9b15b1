/* The support widget preview (the page framed by the Assistants page): loads the real /widget.js the way a
 * customer's page embeds it, with the signed-in key (sessionStorage is shared with the framing page, same origin)
 * and the collections and title from the query string; opens it without taking the keyboard focus; and reports
 * each reply (the widget's "inhouse-support:reply" event) to the framing page, same origin only. */
(function () {
  "use strict";
  const params = new URLSearchParams(location.search);
  const key = sessionStorage.getItem("inhouse.key");

  function post(message) {
    if (window.parent !== window) window.parent.postMessage(Object.assign({ type: "inhouse-support-preview" }, message), location.origin);
  }

  if (!key) {
    document.getElementById("preview-error").hidden = false;
    post({ event: "error", code: "signed_out" });
    return;
  }
  window.addEventListener("inhouse-support:reply", function (event) {
    const r = event.detail || {};
    post({ event: "reply", reply: { session_id: r.session_id, handoff: !!r.handoff, reason: r.reason || null, status: r.status || null } });
  });
  const script = document.createElement("script");
  script.src = "/widget.js";
  script.async = true;
  script.setAttribute("data-key", key);
  script.setAttribute("data-collections", (params.get("collections") || "").slice(0, 1000));
  script.setAttribute("data-title", (params.get("title") || "Help").slice(0, 80));
  script.addEventListener("load", function () {
    if (window.InhouseSupport) window.InhouseSupport.open({ focus: false });
    post({ event: "ready" });
  });
  script.addEventListener("error", function () { post({ event: "error", code: "widget_unavailable" }); });
  document.body.append(script);
})();
