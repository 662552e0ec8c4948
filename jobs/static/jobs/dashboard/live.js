/*
 * The dashboard websocket (/ws/dashboard/): one connection per page, reconnected with backoff,
 * its messages dispatched to the page. Protocol: docs/dashboard.md and jobs/dashboard/consumer.py.
 */
import { cfg } from "./config.js";
import { isSignedOut, showConnection, signedOutHint } from "./indicator.js";

const CLOSE_UNAUTHORIZED = 4401; // the consumer's code for a session that ended while connected

/**
 * Keep one websocket open: the indicator shows its state; a lost connection is retried with
 * exponential backoff (0.5 s doubling to 10 s, jittered). Every "hello" (first connect and each
 * reconnect) sends the page's subscription and calls onHello, which resyncs from the API.
 */
export function connectLive({ subscription, onHello, onFrame }) {
  let socket = null;
  let attempt = 0;
  let retryTimer = null;
  let countdown = null;

  function open() {
    clearTimeout(retryTimer);
    clearInterval(countdown);
    showConnection("connecting", attempt ? "reconnecting…" : "connecting…");
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    let ws;
    try {
      ws = new WebSocket(scheme + location.host + cfg.ws);
    } catch {
      retry();
      return;
    }
    socket = ws;
    ws.onmessage = (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (message.type === "hello") {
        attempt = 0;
        showConnection("live", "live");
        ws.send(JSON.stringify(subscription()));
        onHello();
      } else if (message.type === "batch") {
        onFrame(message);
      }
    };
    ws.onclose = (event) => {
      if (socket !== ws) return;
      socket = null;
      if (event.code === CLOSE_UNAUTHORIZED) {
        signedOutHint(401, null);
        return;
      }
      retry();
    };
  }

  function retry() {
    const delay = Math.min(10000, 500 * 2 ** attempt) * (0.75 + Math.random() * 0.5);
    attempt += 1;
    let left = Math.ceil(delay / 1000);
    showConnection("down", `disconnected · retrying in ${left}s`);
    countdown = setInterval(() => {
      left -= 1;
      if (left > 0) showConnection("down", `disconnected · retrying in ${left}s`);
    }, 1000);
    retryTimer = setTimeout(open, delay);
  }

  // Coming back online or to the tab: do not sit out the rest of a long backoff.
  const retryNow = () => {
    if (!socket && !isSignedOut() && document.visibilityState === "visible") open();
  };
  window.addEventListener("online", retryNow);
  document.addEventListener("visibilitychange", retryNow);
  open();
  return {
    /** Send the subscription again (the page's filters changed). */
    resubscribe() {
      if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(subscription()));
    },
  };
}
