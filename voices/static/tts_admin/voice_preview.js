// The voice page's "Synthesized preview": fetch the WAV (so errors can be shown as text),
// then play it. Without this script the player still works with the default sentence.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const panel = document.getElementById("tts-preview");
  if (!panel) {
    return;
  }
  const input = document.getElementById("tts-preview-text");
  const button = document.getElementById("tts-preview-button");
  const audio = document.getElementById("tts-preview-audio");
  const status = document.getElementById("tts-preview-status");
  let objectUrl = null;

  const say = (message, kind) => {
    status.textContent = message;
    status.classList.toggle("tts-error", kind === "error");
    status.classList.toggle("tts-ok", kind === "ok");
  };

  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault(); // never submit the voice's form from here
      button.click();
    }
  });

  button.addEventListener("click", async () => {
    const url = new URL(panel.dataset.url, window.location.href);
    const text = input.value.trim();
    if (text) {
      url.searchParams.set("text", text);
    }
    button.disabled = true;
    say("Synthesizing…");
    const started = performance.now();
    try {
      const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      if (!response.ok) {
        throw new Error((await response.text()) || `HTTP ${response.status}`);
      }
      const blob = await response.blob();
      if (objectUrl) {
        URL.revokeObjectURL(objectUrl);
      }
      objectUrl = URL.createObjectURL(blob);
      audio.src = objectUrl;
      audio.addEventListener("loadedmetadata", () => {
        const took = ((performance.now() - started) / 1000).toFixed(1);
        say(`Ready: ${audio.duration.toFixed(1)} s of audio, synthesized in ${took} s.`, "ok");
      }, { once: true });
      audio.load();
      audio.play().catch(() => { /* autoplay refused: the controls are there */ });
    } catch (error) {
      say(`Preview failed: ${error.message}`, "error");
    } finally {
      button.disabled = false;
    }
  });
});
