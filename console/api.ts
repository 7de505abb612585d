/**
 * The console's client for /api/v1: the admin token lives in sessionStorage (gone when the tab
 * closes) and goes out only as an Authorization header, never in a URL or a cookie.
 */
export const TOKEN_KEY = "spotkeep.adminToken";

export function storedToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function storeToken(token: string | null): void {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Called when the coordinator refuses the stored token (401): the app signs out. */
let onUnauthorized: (message: string) => void = () => undefined;
export function whenUnauthorized(f: (message: string) => void): void {
  onUnauthorized = f;
}

export async function api<T>(path: string, init: { method?: string; body?: unknown; token?: string } = {}): Promise<T> {
  const token = init.token ?? storedToken();
  if (!token) throw new ApiError(401, "unauthorized", "not signed in");
  const res = await fetch(`/api/v1${path}`, {
    method: init.method ?? "GET",
    headers: {
      authorization: `Bearer ${token}`,
      ...(init.body === undefined ? {} : { "content-type": "application/json" }),
    },
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
    cache: "no-store",
  });
  const text = await res.text();
  let data: unknown = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    /* not JSON: reported below */
  }
  if (!res.ok) {
    const err = (data as { error?: { code?: string; message?: string } } | null)?.error;
    const e = new ApiError(res.status, err?.code ?? "http", err?.message ?? `${res.status} ${res.statusText}`);
    if (res.status === 401 && init.token === undefined) onUnauthorized(e.message);
    throw e;
  }
  return data as T;
}

/**
 * Follow /api/v1/stream (server-sent events read through fetch, which can send the header
 * EventSource cannot). When the stream cannot be opened or breaks, poll `poll` every 2 s and try
 * the stream again after 30 s. Returns a function that stops everything.
 */
export function follow<T>(
  event: string,
  onData: (data: T) => void,
  poll: () => Promise<T>,
  onMode: (m: "stream" | "polling") => void,
): () => void {
  let stopped = false;
  const ctl = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;

  const pollFor = async (ms: number) => {
    onMode("polling");
    const end = Date.now() + ms;
    while (!stopped && Date.now() < end) {
      try {
        onData(await poll());
      } catch {
        /* shown as stale data; the next round retries */
      }
      await new Promise((r) => (timer = setTimeout(r, 2000)));
    }
  };

  const run = async () => {
    while (!stopped) {
      const token = storedToken();
      if (!token) return;
      try {
        const res = await fetch("/api/v1/stream", { headers: { authorization: `Bearer ${token}` }, signal: ctl.signal, cache: "no-store" });
        if (res.status === 401) return onUnauthorized("the bearer token is not valid");
        if (!res.ok || !res.body) throw new Error(`stream: ${res.status}`);
        onMode("stream");
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let cut: number;
          while ((cut = buf.indexOf("\n\n")) >= 0) {
            const block = buf.slice(0, cut);
            buf = buf.slice(cut + 2);
            let name = "message";
            const lines: string[] = [];
            for (const line of block.split("\n")) {
              if (line.startsWith("event:")) name = line.slice(6).trim();
              else if (line.startsWith("data:")) lines.push(line.slice(5).trimStart());
            }
            if (name === event && lines.length) onData(JSON.parse(lines.join("\n")) as T);
          }
        }
      } catch {
        if (stopped) return;
      }
      if (!stopped) await pollFor(30_000);
    }
  };
  void run();
  return () => {
    stopped = true;
    ctl.abort();
    clearTimeout(timer);
  };
}
