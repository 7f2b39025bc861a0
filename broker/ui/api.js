// The broker's JSON APIs with the token from sessionStorage, and the SSE live tail.

const TOKEN_KEY = "broker.token";

export const auth = {
  get token() {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  save(token) {
    sessionStorage.setItem(TOKEN_KEY, token);
  },
  clear() {
    sessionStorage.removeItem(TOKEN_KEY);
  },
};

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// The app listens for this to send the user back to the login form.
export const signals = new EventTarget();

function url(path, params) {
  const target = new URL(path, location.origin);
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== null && value !== undefined && value !== "") target.searchParams.set(key, value);
  }
  return target;
}

export async function api(path, { method = "GET", params, token = auth.token } = {}) {
  let response;
  try {
    response = await fetch(url(path, params), {
      method,
      headers: { Authorization: `Bearer ${token}`, Accept: "application/json" },
      cache: "no-store",
    });
  } catch (err) {
    throw new ApiError(0, `the broker did not answer (${err.message})`);
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (response.status === 401 && token === auth.token) signals.dispatchEvent(new Event("unauthorized"));
  if (!response.ok) throw new ApiError(response.status, (data && data.error) || response.statusText);
  return data;
}

export const replay = (id) => api(`/api/v1/events/${encodeURIComponent(id)}/replay`, { method: "POST" });

// EventSource cannot send headers, so the token travels as `access_token`. The browser reconnects by
// itself and sends Last-Event-ID, so no change is lost across a blip; a refused stream (401) is closed
// and retried slowly.
export function liveTail(params, { onChange, onState }) {
  let source = null;
  let retry = null;
  let stopped = false;
  const open = () => {
    source = new EventSource(url("/api/v1/events/stream", { ...params, access_token: auth.token }));
    source.addEventListener("change", (msg) => {
      try {
        onChange(JSON.parse(msg.data));
      } catch (err) {
        console.warn("bad change frame", err);
      }
    });
    source.addEventListener("open", () => onState("live"));
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) {
        onState("offline");
        if (!stopped) retry = setTimeout(open, 5000);
      } else {
        onState("reconnecting");
      }
    });
  };
  onState("connecting");
  open();
  return () => {
    stopped = true;
    clearTimeout(retry);
    if (source) source.close();
  };
}
