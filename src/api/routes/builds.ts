import { createHash } from "node:crypto";
import {
  acceptBuild,
  acceptedEarlier,
  BUILD_TASK_NAME,
  describeBreach,
  IdempotencyKeyReused,
  LimitReached,
  previewBuild,
  ReservationFailed,
  type AcceptedBuild,
  type IdempotencyKey,
} from "../../lifecycle/index.js";
import { ApiError, invalidArgument, missingArgument, type ErrorCode } from "../../errors.js";
import { randomHostname } from "../../planner/hostnames.js";
import type { BuildPlan, PlanProblem } from "../../planner/plan.js";
import type { CatalogSnapshot } from "../../planner/snapshot.js";
import { planBuild } from "../../planner/planner.js";
import {
  checkSpec,
  detectFormat,
  formatSyntaxErrors,
  isSyntaxError,
  writeXml,
  type SourceMap,
  type SpecError,
  type SpecWarning,
  type SystemDisk,
  type VirtualMachineSpec,
} from "../../spec/index.js";
import {
  booleanArgument,
  integerArgument,
  keyValueArray,
  lookupArgument,
  requireLookup,
  requireString,
  stringArgument,
  type ArgumentBag,
  type KeyValue,
} from "../arguments.js";
import type { Operation, OperationContext, ResolvedOrganization } from "../operation.js";
import * as present from "../presenters.js";
import { checkOwnership, resolveOrganization } from "../resolve.js";

const SPEC_MAX_LENGTH = 256 * 1024;

interface LocatedProblem {
  line: number;
  column: number;
  path: string;
  code: string;
  message: string;
}

function located(problems: PlanProblem[], sources: SourceMap): LocatedProblem[] {
  return problems.map((p) => ({ ...sources.get(p.path), path: p.path, code: p.code, message: p.message }));
}

function validationError(problems: LocatedProblem[]): ApiError {
  return new ApiError("validation_error", {
    errors: problems.map((p) => `${p.path}: ${p.message}`),
    problems,
  });
}

/** The answer to an accepted build, new or replayed: the same body either way. */
function created(accepted: AcceptedBuild, replayed: boolean) {
  const state = { id: accepted.buildId, state: "pending" };
  return {
    status: 201,
    body: {
      task: { id: accepted.taskId, name: BUILD_TASK_NAME, status: "pending" },
      build: state,
      virtual_machine_build: state,
      hostname: accepted.hostname,
      annotations: accepted.annotations,
    },
    ...(replayed ? { headers: { "idempotent-replayed": "true" } } : {}),
  };
}

function requestHash(context: OperationContext, organizationId: string): string {
  const body = JSON.stringify({
    operation: context.operation.name,
    organizationId,
    args: sortKeys(context.args),
  });
  return createHash("sha256").update(body).digest("hex");
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === "object") {
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .filter((k) => k !== "organization")
        .map((k) => [k, sortKeys((value as Record<string, unknown>)[k])]),
    );
  }
  return value;
}

/** The request's Idempotency-Key, if it has one, with what identifies the request. */
function idempotencyKey(context: OperationContext, organizationId: string): IdempotencyKey | undefined {
  const header = context.request.headers["idempotency-key"];
  if (header === undefined) return undefined;
  const key = Array.isArray(header) ? header[0]! : header;
  if (key.length === 0 || key.length > 255 || !/^[\x21-\x7e]+$/.test(key)) {
    throw invalidArgument(["Idempotency-Key"], "validation_errors", ["1 to 255 printable ASCII characters"]);
  }
  return { identityId: context.identity.id, key, requestHash: requestHash(context, organizationId) };
}

/** Lifecycle refusals that are the client's to fix, in the API's words. */
function idempotent<T>(work: () => Promise<T>): Promise<T> {
  return work().catch((error: unknown) => {
    if (error instanceof IdempotencyKeyReused)
      throw new ApiError("idempotency_key_reused", { key: error.key });
    throw error;
  });
}

/** A build request of either endpoint, read into the spec model. */
interface BuildRequest {
  context: OperationContext;
  org: ResolvedOrganization;
  spec: VirtualMachineSpec;
  sources: SourceMap;
  submittedSpec: string;
  annotations: KeyValue[];
  notFoundAs404: boolean;
}

/**
 * The shared path of both build endpoints: plan against the catalog, reserve, record.
 * With an Idempotency-Key, requests with the same key run one at a time in this process,
 * and a request that fails after another process recorded an outcome under its key
 * (its hostname or addresses taken by that very build) answers with that outcome.
 */
async function buildFromModel(build: BuildRequest) {
  const { context, org } = build;
  const key = idempotencyKey(context, org.id);
  if (!key) return accept(build);
  return context.services.idempotentRequests.run(`${key.identityId}\0${key.key}`, async () => {
    const earlier = await idempotent(() => acceptedEarlier(context.services.db, key));
    if (earlier) return created(earlier, true);
    try {
      return await accept(build, key);
    } catch (error) {
      const recorded = await idempotent(() => acceptedEarlier(context.services.db, key));
      if (recorded) return created(recorded, true);
      throw error;
    }
  });
}

async function accept(
  { context, org, spec, sources, submittedSpec, annotations, notFoundAs404 }: BuildRequest,
  key?: IdempotencyKey,
) {
  const snapshot = await context.services.snapshots.load(org, spec);
  const planned = planBuild(spec, snapshot, randomHostname);
  if (!planned.ok) {
    if (notFoundAs404) throwFirstNotFound(planned.problems);
    throw validationError(located(planned.problems, sources));
  }
  try {
    const { build, replayed } = await idempotent(() =>
      acceptBuild(
        context.services.groupCommit,
        context.services.db,
        {
          organizationId: org.id,
          plan: planned.plan,
          renderSpecXml: (hostname) => writeXml({ ...planned.normalized, hostname }, { style: "server" }),
          submittedSpec,
          annotations,
          fqdnSuffix: org.infrastructure_domain,
          defaultLimits: context.services.organizationLimits,
          ...(key ? { idempotency: key } : {}),
        },
        randomHostname,
      ),
    );
    context.services.notifyWork?.();
    return created(build, replayed);
  } catch (error) {
    if (error instanceof ReservationFailed) throw validationError(located(error.problems, sources));
    throw error;
  }
}

const NOT_FOUND_BY_PATH: [RegExp, ErrorCode][] = [
  [/\/Zone$/, "zone_not_found"],
  [/\/DataCenter$/, "data_center_not_found"],
  [/\/Resources\/Package$/, "package_not_found"],
  [/\/DiskTemplate\/DiskTemplate$/, "disk_template_not_found"],
  [/\/Network$/, "network_not_found"],
];

function throwFirstNotFound(problems: PlanProblem[]): void {
  for (const problem of problems) {
    if (problem.code !== "not_found") continue;
    const match = NOT_FOUND_BY_PATH.find(([pattern]) => pattern.test(problem.path));
    if (match) throw new ApiError(match[1]);
  }
}

/** Reads the `xml` argument: XML as Katapult takes it, or the JSON/YAML forms of go-katapult. */
function readSpec(args: ArgumentBag) {
  const text = requireString(args, "xml");
  if (text.length > SPEC_MAX_LENGTH * 4)
    throw new ApiError("invalid_spec_xml", { errors: "1:1: FATAL: the document is too large" });
  const result = checkSpec(text, { format: detectFormat(text) });
  return { text, result };
}

function syntaxOrRules(errors: SpecError[]): ApiError {
  const syntax = errors.filter(isSyntaxError);
  if (syntax.length > 0) return new ApiError("invalid_spec_xml", { errors: formatSyntaxErrors(syntax) });
  return validationError(errors);
}

/** The non-spec build's arguments, turned into the same spec model. */
function specFromArguments(args: ArgumentBag): VirtualMachineSpec {
  const spec: VirtualMachineSpec = {};
  const zone = lookupArgument(args, "zone", ["id", "permalink"] as const);
  const dataCenter = lookupArgument(args, "data_center", ["id", "permalink"] as const);
  if (!zone && !dataCenter) throw new ApiError("location_required");
  if (zone) spec.zone = { [zone.key]: zone.value };
  if (dataCenter) spec.data_center = { [dataCenter.key]: dataCenter.value };
  const pkg = lookupArgument(args, "package", ["id", "permalink"] as const);
  if (!pkg) throw missingArgument(["package"]);
  spec.resources = { package: { [pkg.key]: pkg.value } };
  const template = lookupArgument(args, "disk_template", ["id", "permalink"] as const);
  const options = keyValueArray(args, "disk_template_options");
  if (template)
    spec.disk_template = { [template.key]: template.value, ...(options.length > 0 ? { options } : {}) };
  const disks = args.disks;
  if (disks !== undefined && disks !== null) {
    const list = Array.isArray(disks) ? disks : typeof disks === "object" ? Object.values(disks) : undefined;
    if (!list) throw invalidArgument(["disks"], "array_expected");
    const parsed = list.map((raw, index) => {
      if (!raw || typeof raw !== "object" || Array.isArray(raw))
        throw invalidArgument(["disks"], "object_expected", [], index);
      const disk = raw as ArgumentBag;
      const size = integerArgument(disk, "size_in_gb", ["disks", "size_in_gb"]);
      if (size === undefined) throw missingArgument(["disks", "size_in_gb"]);
      const fs = stringArgument(disk, "initial_file_system");
      const speed = stringArgument(disk, "storage_speed");
      if (fs !== undefined && fs !== "ext4" && fs !== "xfs")
        throw invalidArgument(["disks", "initial_file_system"], "invalid_enum_value", [], index);
      if (speed !== undefined && speed !== "nvme" && speed !== "ssd")
        throw invalidArgument(["disks", "storage_speed"], "invalid_enum_value", [], index);
      const io = lookupArgument(disk, "io_profile", ["id", "permalink"] as const);
      const system: SystemDisk = { size };
      const name = stringArgument(disk, "name", { maxLength: 255 });
      if (name) system.name = name;
      if (speed) system.speed = speed;
      if (fs) system.file_system_type = fs;
      if (io) system.io_profile = { [io.key]: io.value };
      return { disk: system, system: booleanArgument(disk, "system") ?? false };
    });
    if (parsed.filter((d) => d.system).length !== 1) throw new ApiError("one_system_disk_required");
    spec.system_disks = [...parsed.filter((d) => d.system), ...parsed.filter((d) => !d.system)].map(
      (d) => d.disk,
    );
  }
  const network = lookupArgument(args, "network", ["id", "permalink"] as const);
  if (network)
    spec.network_interfaces = [
      { network: { [network.key]: network.value }, ip_address_allocations: [{ type: "new", version: 4 }] },
    ];
  const hostname = stringArgument(args, "hostname", { maxLength: 253 });
  if (hostname) spec.hostname = hostname;
  return spec;
}

export const buildOperations: Operation[] = [
  {
    name: "build_from_spec",
    method: "POST",
    path: "/organizations/organization/virtual_machines/build_from_spec",
    scopes: ["virtual_machines"],
    access: "write",
    bucket: "build",
    documentArgument: "xml",
    async handle(context) {
      const org = await resolveOrganization(context);
      const annotations = keyValueArray(context.args, "annotations");
      const { text, result } = readSpec(context.args);
      if (!result.valid || !result.spec) throw syntaxOrRules(result.errors);
      return buildFromModel({
        context,
        org,
        spec: result.spec,
        sources: result.sources,
        submittedSpec: text,
        annotations,
        notFoundAs404: false,
      });
    },
  },
  {
    name: "build",
    method: "POST",
    path: "/organizations/organization/virtual_machines/build",
    scopes: ["virtual_machines"],
    access: "write",
    bucket: "build",
    async handle(context) {
      const org = await resolveOrganization(context);
      const annotations = keyValueArray(context.args, "annotations");
      const spec = specFromArguments(context.args);
      // Templates are optional here: the first universal template would be a guess, so name one.
      if (!spec.disk_template)
        throw validationError([
          {
            line: 1,
            column: 1,
            path: "disk_template",
            code: "missing_value",
            message: "a disk_template is required",
          },
        ]);
      const xml = writeXml(spec);
      const check = checkSpec(xml, { format: "xml" });
      if (!check.valid || !check.spec)
        throw validationError(check.errors.map((e) => ({ ...e, message: e.message })));
      return buildFromModel({
        context,
        org,
        spec: check.spec,
        sources: check.sources,
        submittedSpec: xml,
        annotations,
        notFoundAs404: true,
      });
    },
  },
  {
    name: "validate_spec",
    method: "POST",
    path: "/organizations/organization/virtual_machines/validate_spec",
    scopes: ["virtual_machines"],
    access: "read",
    bucket: "read",
    documentArgument: "xml",
    async handle(context) {
      const org = await resolveOrganization(context);
      const text = requireString(context.args, "xml");
      const result = checkSpec(text, { format: detectFormat(text) });
      const report = (errors: LocatedProblem[], warnings: SpecWarning[], plan: unknown) => ({
        body: { valid: errors.length === 0, errors, warnings, plan },
      });
      if (!result.valid || !result.spec) return report(result.errors, result.warnings, null);
      const snapshot = await context.services.snapshots.load(org, result.spec);
      const planned = planBuild(result.spec, snapshot, randomHostname);
      if (!planned.ok) return report(located(planned.problems, result.sources), result.warnings, null);
      try {
        const accepted = await previewBuild(
          context.services.db,
          {
            organizationId: org.id,
            plan: planned.plan,
            renderSpecXml: () => "",
            submittedSpec: text,
            annotations: [],
            fqdnSuffix: org.infrastructure_domain,
            defaultLimits: context.services.organizationLimits,
          },
          randomHostname,
        );
        return report([], result.warnings, describePlan(planned.plan, accepted, snapshot));
      } catch (error) {
        if (error instanceof ReservationFailed)
          return report(located(error.problems, result.sources), result.warnings, null);
        if (error instanceof LimitReached) {
          const problems = error.breaches.map((breach) => ({
            path: "/VirtualMachineSpec",
            code: "unavailable" as const,
            message: `the organization's limit would be passed: ${describeBreach(breach)}`,
          }));
          return report(located(problems, result.sources), result.warnings, null);
        }
        throw error;
      }
    },
  },
  {
    name: "get_virtual_machine_build",
    method: "GET",
    path: "/virtual_machines/builds/virtual_machine_build",
    scopes: ["virtual_machines", "virtual_machines:read"],
    access: "read",
    bucket: "read",
    async handle(context) {
      const { queries } = context.services;
      const lookup = requireLookup(
        context.args,
        "virtual_machine_build",
        ["id"] as const,
        context.segments.virtual_machine_build,
      );
      const [build] = await queries.buildById(lookup.value);
      if (!build) throw new ApiError("build_not_found");
      await checkOwnership(context, build.organization_id, "build_not_found");
      const [vm] =
        build.virtual_machine_id && build.state !== "pending"
          ? await queries.virtualMachineById(build.virtual_machine_id)
          : [];
      // The annotations never change either.
      const fingerprint = present.buildFingerprint(build, vm);
      const body = await context.services.renderedBodies.get(build.id, fingerprint, async () => {
        const [spec] = await queries.buildSpecXml(build.id);
        const annotations = await queries.annotations("VirtualMachineBuild", build.id);
        return {
          virtual_machine_build: present.build(build, spec?.spec_xml ?? "", vm),
          annotations: annotations.map((a) => ({ key: a.key, value: a.value ?? "" })),
        };
      });
      return { body };
    },
  },
  {
    name: "get_task",
    method: "GET",
    path: "/tasks/task",
    scopes: ["tasks", "tasks:read"],
    access: "read",
    bucket: "read",
    async handle(context) {
      const lookup = requireLookup(context.args, "task", ["id"] as const, context.segments.task);
      const [task] = await context.services.queries.taskById(lookup.value);
      if (!task) throw new ApiError("task_not_found");
      await checkOwnership(context, task.organization_id, "task_not_found");
      return { body: { task: present.task(task) } };
    },
  },
];

function describePlan(plan: BuildPlan, accepted: AcceptedBuild, snapshot: CatalogSnapshot) {
  const dc = snapshot.dataCenters.find((d) => d.id === plan.dataCenterId)!;
  const zone = snapshot.zones.find((z) => z.id === plan.zoneId)!;
  const template = snapshot.templates.find((t) => t.id === plan.template.templateId)!;
  const pkg = plan.packageId ? snapshot.packages.find((p) => p.id === plan.packageId) : undefined;
  return {
    data_center: { id: dc.id, permalink: dc.permalink, name: dc.name },
    zone: { id: zone.id, permalink: zone.permalink, name: zone.name },
    resources: {
      package: pkg ? { id: pkg.id, permalink: pkg.permalink } : null,
      memory_in_gb: plan.memoryInGb,
      cpu_cores: plan.cpuCores,
    },
    disk_template: {
      id: template.id,
      permalink: template.permalink,
      version: plan.template.number,
      options: plan.template.options,
    },
    disks: plan.disks.map((d) => ({
      name: d.name,
      size_in_gb: d.sizeInGb,
      speed: d.speed,
      system: d.system,
      file_system_type: d.fileSystemType,
    })),
    shared_disks: plan.sharedDiskIds.map((id) => ({ id })),
    interfaces: plan.interfaces.map((nic, i) => {
      const network = nic.networkId ? snapshot.networks.find((n) => n.id === nic.networkId) : undefined;
      return {
        network: network ? { id: network.id, permalink: network.permalink } : null,
        virtual_network: nic.virtualNetworkId ? { id: nic.virtualNetworkId } : null,
        speed_profile: nic.speedProfileId ? { id: nic.speedProfileId } : null,
        ip_addresses: accepted.addresses
          .filter((a) => a.interface === i)
          .map((a) => ({ address: a.address, version: a.version })),
      };
    }),
    hostname: accepted.hostname,
    name: plan.name,
    authorized_keys: plan.authorizedKeys.length,
    tags: plan.tags,
  };
}

/**
 * Build progress without polling: Server-Sent Events with the build's state and its
 * task's status and progress whenever they change, the failure reason, and an `end`
 * event when the build has finished.
 */
export const buildEventsOperation: Operation = {
  name: "get_virtual_machine_build_events",
  method: "GET",
  path: "/virtual_machines/builds/virtual_machine_build/events",
  scopes: ["virtual_machines", "virtual_machines:read"],
  access: "read",
  bucket: "read",
  async handle(context) {
    const { queries, closing } = context.services;
    const lookup = requireLookup(
      context.args,
      "virtual_machine_build",
      ["id"] as const,
      context.segments.virtual_machine_build,
    );
    const [first] = await queries.buildById(lookup.value);
    if (!first) throw new ApiError("build_not_found");
    await checkOwnership(context, first.organization_id, "build_not_found");
    const raw = context.reply.raw;
    context.reply.hijack();
    raw.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      "x-request-id": context.request.id,
      "x-accel-buffering": "no",
    });
    let closed = false;
    const close = () => (closed = true);
    context.request.raw.on("close", close);
    closing.addEventListener("abort", close);
    let last = "";
    let sequence = 0;
    const send = (event: string, data: unknown) =>
      raw.write(`id: ${++sequence}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    try {
      while (!closed) {
        const [build] = await queries.buildById(first.id);
        const [task] = await queries.taskById(first.task_id);
        if (!build || !task) break;
        const [vm] = build.virtual_machine_id
          ? await queries.virtualMachineById(build.virtual_machine_id)
          : [];
        const state = {
          build: { id: build.id, state: build.state, failure_reason: build.failure_reason },
          task: present.task(task),
          virtual_machine: vm && build.state !== "pending" ? present.virtualMachineSummary(vm) : null,
        };
        const text = JSON.stringify(state);
        if (text !== last) {
          send("progress", state);
          last = text;
        }
        if (build.state === "complete" || build.state === "failed") {
          send("end", { state: build.state, failure_reason: build.failure_reason });
          break;
        }
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    } finally {
      context.request.raw.off("close", close);
      closing.removeEventListener("abort", close);
      raw.end();
    }
    return { body: null };
  },
};
