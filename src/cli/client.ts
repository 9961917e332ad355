/** A small client of the Katapult API as Trebuchet serves it (for the user CLI and the demo). */

export class ApiClientError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly detail: unknown,
    message: string,
  ) {
    super(message);
  }
}

export interface BuildProgress {
  build: { id: string; state: string; failure_reason: string | null };
  task: {
    id: string;
    name: string;
    status: string;
    progress: number;
    started_at: number | null;
    finished_at: number | null;
  };
  virtual_machine: { id: string; name: string; hostname: string; fqdn: string; state: string } | null;
}

export class ApiClient {
  constructor(
    readonly baseUrl: string,
    private readonly token: string,
  ) {}

  static fromEnv(env: NodeJS.ProcessEnv = process.env): ApiClient {
    const token = env.TREBUCHET_TOKEN;
    if (!token) throw new Error("set TREBUCHET_TOKEN to an API token (trebuchet admin token create)");
    return new ApiClient(env.TREBUCHET_URL ?? "http://127.0.0.1:8080", token);
  }

  private url(path: string): string {
    return `${this.baseUrl.replace(/\/$/, "")}/core/v1${path}`;
  }

  async call<T = Record<string, unknown>>(method: string, path: string, body?: unknown): Promise<T> {
    let response: Response;
    try {
      response = await fetch(this.url(path), {
        method,
        headers: {
          authorization: `Bearer ${this.token}`,
          ...(body !== undefined ? { "content-type": "application/json" } : {}),
        },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
    } catch (error) {
      throw new Error(`cannot reach ${this.baseUrl}: ${(error as Error).cause ?? (error as Error).message}`);
    }
    const text = await response.text();
    const json = text ? (JSON.parse(text) as Record<string, unknown>) : {};
    if (!response.ok) {
      const error = (json.error ?? {}) as { code?: string; description?: string; detail?: unknown };
      const detail = error.detail as { errors?: unknown; details?: unknown } | undefined;
      const extra = Array.isArray(detail?.errors)
        ? `\n  ${detail.errors.join("\n  ")}`
        : typeof detail?.errors === "string"
          ? `\n  ${detail.errors}`
          : detail?.details
            ? ` (${detail.details})`
            : "";
      throw new ApiClientError(
        response.status,
        error.code ?? "unknown",
        error.detail,
        `${error.code ?? response.status}: ${error.description ?? text}${extra}`,
      );
    }
    return json as T;
  }

  /** Follows a build's event stream until it ends; calls `onProgress` on every change. */
  async followBuild(
    buildId: string,
    onProgress: (progress: BuildProgress) => void,
  ): Promise<{ state: string; failure_reason: string | null }> {
    const response = await fetch(this.url(`/virtual_machines/builds/${encodeURIComponent(buildId)}/events`), {
      headers: { authorization: `Bearer ${this.token}`, accept: "text/event-stream" },
    });
    if (!response.ok || !response.body)
      throw new Error(`cannot follow build ${buildId}: HTTP ${response.status}`);
    const decoder = new TextDecoder();
    let buffer = "";
    for await (const chunk of response.body) {
      buffer += decoder.decode(chunk as Uint8Array, { stream: true });
      let boundary: number;
      while ((boundary = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, boundary);
        buffer = buffer.slice(boundary + 2);
        const event = /^event: (.*)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (!event || !data) continue;
        if (event === "progress") onProgress(JSON.parse(data) as BuildProgress);
        if (event === "end") return JSON.parse(data) as { state: string; failure_reason: string | null };
      }
    }
    throw new Error(`the event stream of build ${buildId} ended early`);
  }

  /** Polls a task until it has finished. */
  async waitForTask(taskId: string, timeoutMs = 300_000): Promise<{ status: string; error?: string }> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { task } = await this.call<{ task: { status: string } }>(
        "GET",
        `/tasks/${encodeURIComponent(taskId)}`,
      );
      if (task.status === "completed" || task.status === "failed") return task;
      if (Date.now() > deadline)
        throw new Error(`task ${taskId} did not finish within ${timeoutMs / 1000} s`);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
}
