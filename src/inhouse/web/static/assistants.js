/* Assistants page: which assistants this server offers. The server marks a card available when its API
 * routes (/v1/apps/<name>…) are registered; the others say they are coming. */
(function () {
  "use strict";
  const I = window.inhouse;
  if (!I || !I.signedIn) return;
  for (const card of document.querySelectorAll("[data-assistant]")) {
    if (card.dataset.available !== "1") continue;
    const badge = card.querySelector("[data-state]");
    badge.textContent = I.t("assist.api_ready");
    badge.className = "badge badge-ok";
    card.querySelector("[data-body]").append(I.el("p", { class: "muted small" },
      I.t("assist.api_at", { path: "/v1/apps/" + card.dataset.assistant })));
  }
})();
