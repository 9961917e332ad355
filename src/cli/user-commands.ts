import { readFileSync } from "node:fs";
import { Option, type Command } from "commander";
import { ApiClient, type BuildProgress } from "./client.js";

type Output = "text" | "json";
const outputOption = () =>
  new Option("--output <format>", "text or json").choices(["text", "json"]).default("text");

interface VmSummary {
  id: string;
  name: string;
  hostname: string;
  fqdn: string;
  state?: string;
  ip_addresses: { address: string }[];
}

function print(output: Output, value: unknown, text: string): void {
  process.stdout.write(output === "json" ? `${JSON.stringify(value, null, 2)}\n` : `${text}\n`);
}

function progressLine(progress: BuildProgress, startedAt: number): string {
  const elapsed = ((Date.now() - startedAt) / 1000).toFixed(1).padStart(5);
  const vm = progress.virtual_machine
    ? ` vm ${progress.virtual_machine.id} ${progress.virtual_machine.state}`
    : "";
  return `[${elapsed}s] build ${progress.build.state.padEnd(8)} task ${progress.task.status.padEnd(9)} ${String(progress.task.progress).padStart(3)}%${vm}`;
}

/** Builds a VM from a spec; with --wait follows it live and prints how to reach it. */
export async function buildCommand(
  client: ApiClient,
  file: string,
  options: { org: string; wait?: boolean; output: Output; log?: (line: string) => void },
) {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const xml = readFileSync(file === "-" ? 0 : file, "utf8");
  const created = await client.call<{
    virtual_machine_build: { id: string };
    task: { id: string };
    hostname: string;
  }>("POST", "/organizations/_/virtual_machines/build_from_spec", {
    organization: { sub_domain: options.org },
    xml,
  });
  const buildId = created.virtual_machine_build.id;
  if (!options.wait) {
    print(
      options.output,
      created,
      `build ${buildId} accepted (task ${created.task.id}), hostname ${created.hostname}`,
    );
    return { buildId, ok: true, vm: undefined as VmSummary | undefined };
  }
  const started = Date.now();
  if (options.output === "text") log(`build ${buildId} accepted, hostname ${created.hostname}`);
  const end = await client.followBuild(buildId, (progress) => {
    if (options.output === "text") log(progressLine(progress, started));
  });
  const { virtual_machine_build: build } = await client.call<{
    virtual_machine_build: { virtual_machine: { id: string } | null };
  }>("GET", `/virtual_machines/builds/${buildId}`);
  if (end.state !== "complete" || !build.virtual_machine) {
    print(
      options.output,
      { build: buildId, state: end.state, failure_reason: end.failure_reason },
      `build ${buildId} ${end.state}: ${end.failure_reason ?? "no reason given"}`,
    );
    return { buildId, ok: false, vm: undefined };
  }
  const { virtual_machine: vm } = await client.call<{ virtual_machine: VmSummary }>(
    "GET",
    `/virtual_machines/${build.virtual_machine.id}`,
  );
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  const addresses = vm.ip_addresses.map((ip) => ip.address);
  const v4 = addresses.find((a) => !a.includes(":"));
  print(
    options.output,
    { build: buildId, state: end.state, seconds: Number(seconds), virtual_machine: vm },
    [
      `build ${buildId} complete in ${seconds} s`,
      `  VM         ${vm.id} (${vm.state})`,
      `  hostname   ${vm.hostname} (${vm.fqdn})`,
      `  addresses  ${addresses.join(", ")}`,
      ...(v4
        ? [
            `  connect    ssh root@${v4}   (from the host's network namespace: ip netns exec <namespace> ssh root@${v4})`,
          ]
        : []),
    ].join("\n"),
  );
  return { buildId, ok: true, vm };
}

export function registerUserCommands(program: Command): void {
  program
    .command("build")
    .description("Build a VM from a spec (TREBUCHET_URL, TREBUCHET_TOKEN)")
    .argument("<spec>", "spec file (XML, JSON or YAML), or - for standard input")
    .requiredOption("--org <sub-domain>", "the organization to build in")
    .option("--wait", "follow the build until the VM runs, then print how to reach it")
    .addOption(outputOption())
    .action(async (file: string, options: { org: string; wait?: boolean; output: Output }) => {
      const result = await buildCommand(ApiClient.fromEnv(), file, options);
      if (!result.ok) process.exitCode = 1;
    });

  const vm = program.command("vm").description("Virtual machines (TREBUCHET_URL, TREBUCHET_TOKEN)");
  vm.command("list")
    .requiredOption("--org <sub-domain>", "the organization")
    .addOption(outputOption())
    .action(async (options: { org: string; output: Output }) => {
      const body = await ApiClient.fromEnv().call<{ virtual_machines: VmSummary[] }>(
        "GET",
        `/organizations/_/virtual_machines?organization[sub_domain]=${encodeURIComponent(options.org)}&per_page=200`,
      );
      const lines = body.virtual_machines.map(
        (v) => `${v.id}  ${v.hostname.padEnd(30)} ${v.ip_addresses.map((i) => i.address).join(", ")}`,
      );
      print(options.output, body, lines.join("\n") || "(no virtual machines)");
    });
  vm.command("show")
    .argument("<vm>", "VM ID or FQDN")
    .addOption(outputOption())
    .action(async (id: string, options: { output: Output }) => {
      const body = await ApiClient.fromEnv().call<{
        virtual_machine: VmSummary & { zone: { permalink: string } };
      }>("GET", `/virtual_machines/_?${lookup(id)}`);
      const v = body.virtual_machine;
      print(
        options.output,
        body,
        `${v.id} ${v.hostname} (${v.fqdn})\n  state      ${v.state}\n  zone       ${v.zone.permalink}\n  addresses  ${v.ip_addresses.map((i) => i.address).join(", ")}`,
      );
    });
  for (const action of ["start", "stop", "shutdown", "reset"] as const) {
    vm.command(action)
      .argument("<vm>", "VM ID or FQDN")
      .option("--no-wait", "return once the task is queued")
      .addOption(outputOption())
      .action(async (id: string, options: { wait: boolean; output: Output }) => {
        const client = ApiClient.fromEnv();
        const { task } = await client.call<{ task: { id: string } }>(
          "POST",
          `/virtual_machines/_/${action}?${lookup(id)}`,
        );
        const final = options.wait ? await client.waitForTask(task.id) : { status: "pending" };
        print(
          options.output,
          { task: { ...task, ...final } },
          `${action}: task ${task.id} ${final.status}${"error" in final && final.error ? `: ${final.error}` : ""}`,
        );
        if (final.status === "failed") process.exitCode = 1;
      });
  }
  vm.command("delete")
    .description("Delete a VM: it waits in the trash, powered off, with its disks and addresses")
    .argument("<vm>", "VM ID or FQDN")
    .option("--purge", "purge it from the trash at once (its disks are destroyed, its addresses freed)")
    .addOption(outputOption())
    .action(async (id: string, options: { purge?: boolean; output: Output }) => {
      const client = ApiClient.fromEnv();
      const body = await client.call<{ trash_object: { id: string; keep_until: number } }>(
        "DELETE",
        `/virtual_machines/_?${lookup(id)}`,
      );
      if (!options.purge) {
        print(
          options.output,
          body,
          `deleted; in the trash as ${body.trash_object.id} until ${new Date(body.trash_object.keep_until * 1000).toISOString()}`,
        );
        return;
      }
      await purge(client, body.trash_object.id, options.output);
    });
  vm.command("purge")
    .description("Purge a deleted VM from the trash: its disks are destroyed, its addresses freed")
    .argument("<vm>", "VM ID")
    .addOption(outputOption())
    .action(async (id: string, options: { output: Output }) => {
      const client = ApiClient.fromEnv();
      const { trash_object } = await client.call<{ trash_object: { id: string } }>(
        "GET",
        `/trash_objects/_?trash_object[object_id]=${encodeURIComponent(id)}`,
      );
      await purge(client, trash_object.id, options.output);
    });
  vm.command("restore")
    .description("Bring a deleted VM back from the trash, powered off")
    .argument("<vm>", "VM ID")
    .addOption(outputOption())
    .action(async (id: string, options: { output: Output }) => {
      const body = await ApiClient.fromEnv().call<{ trash_object: { id: string } }>(
        "POST",
        `/trash_objects/_/restore?trash_object[object_id]=${encodeURIComponent(id)}`,
      );
      print(options.output, body, `restored ${id} (powered off; start it with: trebuchet vm start ${id})`);
    });
  vm.command("console")
    .argument("<vm>", "VM ID or FQDN")
    .addOption(outputOption())
    .action(async (id: string, options: { output: Output }) => {
      const body = await ApiClient.fromEnv().call<{ console: string }>(
        "GET",
        `/virtual_machines/_/console?${lookup(id)}`,
      );
      print(options.output, body, body.console);
    });
}

function lookup(id: string): string {
  return id.startsWith("vm_")
    ? `virtual_machine[id]=${encodeURIComponent(id)}`
    : `virtual_machine[fqdn]=${encodeURIComponent(id)}`;
}

/** Purges a trash object and waits for the purge to finish. */
async function purge(client: ApiClient, trashId: string, output: Output): Promise<void> {
  const { task } = await client.call<{ task: { id: string } }>(
    "DELETE",
    `/trash_objects/_?trash_object[id]=${encodeURIComponent(trashId)}`,
  );
  const final = await client.waitForTask(task.id);
  print(
    output,
    { task: { ...task, ...final } },
    `purged: task ${task.id} ${final.status}${final.error ? `: ${final.error}` : ""}`,
  );
  if (final.status === "failed") process.exitCode = 1;
}
