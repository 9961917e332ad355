import { Option, type Command } from "commander";
import { loadSettings } from "../config/load.js";
import { serveConfigOf } from "../config/server-config.js";
import { listenMetrics } from "../metrics/listen.js";
import { createServer } from "../server.js";

/** Flags that set a setting: the flag's name by the setting's key. */
export const SERVE_FLAGS = {
  listen: "--listen",
  metrics_listen: "--metrics-listen",
  data_dir: "--data",
  role: "--role",
  host: "--host",
} as const;

/** The flags given on a command line, as the settings loader takes them. */
export function givenFlags(
  values: Partial<Record<keyof typeof SERVE_FLAGS, string>>,
): { key: string; flag: string; text: string }[] {
  return Object.entries(values)
    .filter(([key, text]) => text !== undefined && key in SERVE_FLAGS)
    .map(([key, text]) => ({ key, flag: SERVE_FLAGS[key as keyof typeof SERVE_FLAGS], text: text! }));
}

export function registerServeCommand(program: Command): void {
  program
    .command("serve")
    .description(
      "Run the API and the host agent with the settings of /etc/trebuchet/trebuchet.yaml (or --config), the environment and these flags",
    )
    .option(
      "--config <file>",
      "configuration file (default: $TREBUCHET_CONFIG or /etc/trebuchet/trebuchet.yaml if it exists)",
    )
    .option("--listen <host:port>", "address of the API (default 127.0.0.1:8080)")
    .option("--metrics-listen <host:port>", "address of GET /metrics (default: none, no metrics)")
    .option("--data <dir>", "data directory (default: /var/lib/trebuchet as root)")
    .addOption(
      new Option("--role <role>", "api: HTTP only; worker: the host agent only; all: both (default)"),
    )
    .option("--host <name>", "the catalog host this process's agent runs (default: the catalog's only host)")
    .action(
      async (flags: {
        config?: string;
        listen?: string;
        metricsListen?: string;
        data?: string;
        role?: string;
        host?: string;
      }) => {
        const { settings } = loadSettings({
          configFile: flags.config,
          flags: givenFlags({
            listen: flags.listen,
            metrics_listen: flags.metricsListen,
            data_dir: flags.data,
            role: flags.role,
            host: flags.host,
          }),
        });
        const config = serveConfigOf(settings);
        const server = await createServer(config.server);
        if (config.server.role !== "worker")
          await server.app.listen({ host: config.listen.host, port: config.listen.port });
        const metrics =
          server.metrics && config.metricsListen
            ? await listenMetrics(server.metrics, config.metricsListen)
            : undefined;
        if (metrics) server.app.log.info({ url: metrics.url }, "metrics listening");
        let signals = 0;
        const stop = async (signal: string) => {
          if (++signals > 1) process.exit(130); // a second Ctrl-C does not wait
          server.app.log.info({ signal }, "draining in-flight requests, then stopping");
          await metrics?.close();
          await server.stop();
          process.exit(0);
        };
        process.on("SIGINT", () => void stop("SIGINT"));
        process.on("SIGTERM", () => void stop("SIGTERM"));
      },
    );
}
