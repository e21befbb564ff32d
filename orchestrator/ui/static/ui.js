// Checkout orchestrator dashboard: live refresh by polling an HTML fragment, and the operator's
// retry/cancel buttons. Every URL is relative to the page's <base href> (the application's root).
(() => {
  "use strict";

  const live = document.getElementById("live");
  const status = document.getElementById("live-status");
  const message = document.getElementById("action-message");
  const KEY_STORAGE = "checkout-suite-api-key";
  const PAUSED = "Paused while this tab is hidden";
  let timer = null;
  let inFlight = false;

  function clock() {
    return new Date().toLocaleTimeString();
  }

  function say(text, failed) {
    if (!status) return;
    status.textContent = text;
    status.classList.toggle("failed", Boolean(failed));
  }

  function isFinal() {
    const body = live && live.querySelector("[data-final]");
    return Boolean(body && body.dataset.final === "true");
  }

  function schedule() {
    clearTimeout(timer);
    timer = null;
    if (!live || document.hidden || isFinal()) return;
    timer = setTimeout(refresh, Number(live.dataset.poll) || 4000);
  }

  async function refresh() {
    if (!live || inFlight) return;
    if (document.hidden) {
      say(PAUSED);
      return;
    }
    inFlight = true;
    try {
      const response = await fetch(live.dataset.src, {
        headers: { Accept: "text/html" },
        cache: "no-store",
        credentials: "same-origin",
      });
      if (!response.ok && response.status !== 400) throw new Error(`HTTP ${response.status}`);
      const html = await response.text();
      // Keep the search box's focus and text: only the live part is replaced.
      live.innerHTML = html;
      if (document.hidden) say(PAUSED);
      else say(isFinal() ? `Finished · updated ${clock()}` : `Live · updated ${clock()}`);
      followUp();
    } catch (error) {
      say(`Not updated since ${clock()}: ${error.message}`, true);
    } finally {
      inFlight = false;
      schedule();
    }
  }

  function headers() {
    const result = { Accept: "application/json" };
    const key = sessionStorage.getItem(KEY_STORAGE);
    if (key) result.Authorization = `Bearer ${key}`;
    return result;
  }

  function show(text, failed) {
    if (!message) return;
    message.hidden = false;
    message.textContent = text;
    message.dataset.said = text;
    message.classList.toggle("error", Boolean(failed));
  }

  // After an accepted action, say how the checkout stands now, as the page learns it.
  function followUp() {
    const body = live && live.querySelector("[data-status]");
    if (!message || message.hidden || message.classList.contains("error") || !body) return;
    message.textContent = `${message.dataset.said} Now ${body.dataset.status}.`;
  }

  async function problemText(response) {
    try {
      const problem = await response.json();
      return [problem.title, problem.detail].filter(Boolean).join(": ") || `HTTP ${response.status}`;
    } catch {
      return `HTTP ${response.status}`;
    }
  }

  async function act(button) {
    const action = button.dataset.action;
    if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
    button.disabled = true;
    show(action === "cancel" ? "Cancelling…" : "Retrying…");
    try {
      let response = await fetch(button.dataset.url, { method: "POST", headers: headers() });
      if (response.status === 401) {
        // The orchestrator wants a client key (API_KEYS): ask once, keep it for this tab only.
        const key = window.prompt("This orchestrator requires an API key (one of its API_KEYS):");
        if (key) {
          sessionStorage.setItem(KEY_STORAGE, key.trim());
          response = await fetch(button.dataset.url, { method: "POST", headers: headers() });
        }
      }
      if (response.ok) {
        const checkout = await response.json();
        show(
          action === "cancel"
            ? `Cancel accepted: the checkout is ${checkout.status}; completed steps are being compensated.`
            : `Retry accepted: the checkout is ${checkout.status}.`,
        );
      } else {
        show(`The orchestrator refused (${response.status}): ${await problemText(response)}`, true);
      }
    } catch (error) {
      show(`The request failed: ${error.message}`, true);
    } finally {
      button.disabled = false;
      // Poll again even if the page had stopped (a retried checkout is live again).
      await refresh();
    }
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (button) {
      event.preventDefault();
      act(button);
    }
  });

  document.addEventListener("visibilitychange", () => {
    if (document.hidden) {
      clearTimeout(timer);
      say(PAUSED);
    } else {
      refresh();
    }
  });

  if (live) {
    say(isFinal() ? "Finished" : "Live");
    schedule();
  }
})();
