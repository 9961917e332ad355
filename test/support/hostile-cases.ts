/**
 * Generated hostile requests, as raw bytes: what an attacker or a broken client sends.
 * Deterministic (a seeded generator), so a failing case can be named and run again.
 * Seven kinds: malformed bodies, framing, query and path abuse, header abuse, hostile
 * specs, protocol abuse, references to another tenant's objects.
 */
import { routePath } from "../../src/api/operation.js";
import { OPERATIONS } from "../../src/api/operations.js";
import { request } from "./raw-http.js";

export type Category =
  "malformed_body" | "framing" | "query_and_path" | "headers" | "hostile_spec" | "protocol" | "cross_tenant";

export interface HostileCase {
  category: Category;
  label: string;
  /** Written one after another, `gapMs` apart. */
  pieces: (string | Buffer)[];
  gapMs?: number;
  /** How many answers a correct server gives before it may close (pipelined requests). */
  answers: number;
  /** The request is sent with the tenant's token (its answers must not show the other tenant's data). */
  asTenant: boolean;
  /** It names only another tenant's objects: every answer must refuse it (4xx). */
  mustRefuse?: boolean;
}

/** Objects of the other tenant that hostile requests name (IDs only: what an attacker could guess). */
export interface Victim {
  vmId: string;
  buildId: string;
  taskId: string;
  ipId: string;
  ipAddress: string;
  diskId: string;
  subDomain: string;
  orgId: string;
}

/** mulberry32: small, fast, and the same sequence for the same seed everywhere. */
function generator(seed: number) {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;
  const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)));
  return { next, int, pick, bytes };
}
type Random = ReturnType<typeof generator>;

const PATHS = OPERATIONS.map((op) => ({
  method: op.method,
  path: "/core/v1" + routePath(op.path).replace(/:[a-z_]+/g, "_"),
}));
const WRITES = PATHS.filter((p) => p.method !== "GET");

const SPEC_HEAD =
  '<VirtualMachineSpec><DataCenter by="permalink">lab-1</DataCenter><Resources><Package by="permalink">small-1</Package></Resources><DiskTemplate><DiskTemplate by="permalink">templates/trebuchet-demo</DiskTemplate></DiskTemplate>';

export function hostileCases(options: { seed: number; perCategory: number; token: string; victim: Victim }) {
  const random = generator(options.seed);
  const auth = { authorization: `Bearer ${options.token}` };
  const make: Record<Category, (r: Random, i: number) => Omit<HostileCase, "category">> = {
    malformed_body: (r) => malformedBody(r, auth),
    framing: (r) => framing(r, auth),
    query_and_path: (r) => queryAndPath(r, auth),
    headers: (r) => headerAbuse(r, auth),
    hostile_spec: (r) => hostileSpec(r, auth),
    protocol: (r) => protocol(r, auth),
    cross_tenant: (r) => crossTenant(r, auth, options.victim),
  };
  const cases: HostileCase[] = [];
  for (const category of Object.keys(make) as Category[])
    for (let i = 0; i < options.perCategory; i++) cases.push({ category, ...make[category](random, i) });
  return cases;
}

const one = (label: string, raw: string | Buffer, asTenant = true) => ({
  label,
  pieces: [raw],
  answers: 1,
  asTenant,
});

function deep(depth: number, open: string, close: string, inner = "1") {
  return open.repeat(depth) + inner + close.repeat(depth);
}

function malformedBody(r: Random, auth: Record<string, string>) {
  const target = r.pick(WRITES);
  const bodies: [string, () => string | Buffer][] = [
    ["random bytes", () => r.bytes(1 + r.int(400))],
    ["truncated JSON", () => '{"organization":{"sub_domain":"globex"},"name":"x'.slice(0, 1 + r.int(40))],
    ["deep arrays", () => deep(20 + r.int(5000), "[", "]")],
    ["deep objects", () => deep(20 + r.int(5000), '{"a":', "}")],
    [
      "long array",
      () =>
        `{"tags":[${Array(5_000 + r.int(20_000))
          .fill(1)
          .join(",")}]}`,
    ],
    ["many keys", () => `{${Array.from({ length: 900 + r.int(3000) }, (_, i) => `"k${i}":1`).join(",")}}`],
    [
      "wrong types",
      () => r.pick(['"x"', "1", "null", "true", "[]", '{"organization":5}', '{"organization":[]}']),
    ],
    [
      "proto keys",
      () =>
        '{"__proto__":{"admin":true},"constructor":{"prototype":{"x":1}},"organization":{"sub_domain":"globex"}}',
    ],
    ["huge numbers", () => `{"size_in_gb":1e${r.int(400)},"memory_in_gb":-${r.int(1e9)},"page":1.5e308}`],
    [
      "invalid UTF-8",
      () =>
        Buffer.concat([Buffer.from('{"name":"'), Buffer.from([0xc3, 0x28, 0xff, 0xfe]), Buffer.from('"}')]),
    ],
    [
      "BOM and NUL",
      () => Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"name":"a\u0000b"}')]),
    ],
    ["duplicate keys", () => '{"organization":{"sub_domain":"globex"},"organization":{"sub_domain":"acme"}}'],
    ["lone surrogate", () => '{"name":"\\ud800"}'],
  ];
  const [kind, body] = r.pick(bodies);
  const type = r.pick([
    "application/json",
    "application/json; charset=utf-8",
    "application/json; charset=latin1",
    "text/plain",
    "application/x-www-form-urlencoded",
  ]);
  return one(
    `${kind} to ${target.method} ${target.path} as ${type}`,
    rawRequest(target.method, target.path, { ...auth, "content-type": type }, body()),
  );
}

function rawRequest(
  method: string,
  target: string,
  headers: Record<string, string | null>,
  body: string | Buffer,
) {
  const bytes = typeof body === "string" ? Buffer.from(body) : body;
  const head = request(method, target, { ...headers, "content-length": String(bytes.length) });
  return Buffer.concat([Buffer.from(head, "latin1"), bytes]);
}

function framing(r: Random, auth: Record<string, string>) {
  const path = "/core/v1/organizations/_/ip_addresses?organization[sub_domain]=globex";
  const head = (extra: string) =>
    `POST ${path} HTTP/1.1\r\nhost: t\r\nauthorization: ${auth.authorization}\r\ncontent-type: application/json\r\n${extra}\r\n`;
  const kinds: (() => Omit<HostileCase, "category">)[] = [
    () =>
      one(
        "content-length not a number",
        head(`content-length: ${r.pick(["abc", "1x", "-1", "0x10", "+5", " "])}\r\n`) + "{}",
      ),
    () => one("two content-lengths", head(`content-length: 2\r\ncontent-length: ${3 + r.int(9)}\r\n`) + "{}"),
    () =>
      one(
        "content-length and chunked",
        head("content-length: 2\r\ntransfer-encoding: chunked\r\n") + "2\r\n{}\r\n0\r\n\r\n",
      ),
    () =>
      one(
        "bad chunk size",
        head("transfer-encoding: chunked\r\n") +
          `${r.pick(["zz", "-1", "1 2", "ffffffffffffffffff"])}\r\n{}\r\n0\r\n\r\n`,
      ),
    () => one("chunk longer than said", head("transfer-encoding: chunked\r\n") + "2\r\n{}xx\r\n0\r\n\r\n"),
    () =>
      one(
        "unknown transfer-encoding",
        head(`transfer-encoding: ${r.pick(["gzip", "chunked, gzip", "identity", "x"])}\r\n`) + "{}",
      ),
    () =>
      one(
        "unknown method",
        `${r.pick(["FOO", "BREW", "PROPFIND", "get", "G ET"])} ${path} HTTP/1.1\r\nhost: t\r\n\r\n`,
      ),
    () =>
      one(
        "bad version",
        `GET ${path} ${r.pick(["HTTP/1.2", "HTTP/2.0", "HTTP/0.9", "HTTPS/1.1", "HTTP/1"])}\r\nhost: t\r\n\r\n`,
      ),
    () => one("garbage", r.bytes(1 + r.int(200))),
    () => one("bare LF", `GET ${path} HTTP/1.1\nhost: t\nauthorization: ${auth.authorization}\n\n`),
    () => one("NUL in request line", `GET /core/v1/organiz\u0000ations HTTP/1.1\r\nhost: t\r\n\r\n`),
    () => one("header without colon", head("this is not a header\r\ncontent-length: 2\r\n") + "{}"),
    () => one("obsolete line folding", head("x-fold: a\r\n  b\r\ncontent-length: 2\r\n") + "{}"),
    () => ({
      label: "body shorter than content-length, then silence",
      pieces: [head("content-length: 100\r\n") + '{"a":'],
      answers: 1,
      asTenant: true,
    }),
    () => ({
      label: "headers in pieces, never finished",
      pieces: [`GET ${path} HTTP/1.1\r\n`, "host: t\r\n", "x-a: b\r\n"],
      gapMs: 100,
      answers: 1,
      asTenant: true,
    }),
  ];
  return r.pick(kinds)();
}

function queryAndPath(r: Random, auth: Record<string, string>) {
  const target = r.pick(PATHS.filter((p) => p.method === "GET"));
  const junk = () =>
    r.pick([
      "%",
      "%zz",
      "%c3%28",
      "%00",
      "%ff%fe",
      "..%2f..%2f",
      "../../etc/passwd",
      "%2e%2e/",
      "\u00e9".repeat(10),
      "a".repeat(300 + r.int(5000)),
      "vm_" + "x".repeat(1000),
      "%25%32%35",
      "[",
      "]",
    ]);
  const queries = [
    () => `organization[sub_domain]=${junk()}`,
    () => `virtual_machine[id]=${junk()}&virtual_machine[fqdn]=${junk()}`,
    () => `${"a[".repeat(50 + r.int(200))}=1`,
    () => Array.from({ length: 500 + r.int(2000) }, (_, i) => `p${i}=1`).join("&"),
    () => `organization[]=1&organization[]=2&page=${r.pick(["-1", "0", "1e9", "x", "99999999999999999999"])}`,
    () => `per_page=${r.pick(["0", "201", "-5", "1.5", "[]"])}&page[a]=1`,
    () => `organization[sub_domain]=globex&organization[id]=${junk()}`,
    () => `annotations[][key]=${junk()}&annotations[][value]=${junk()}`,
    () => `${junk()}=${junk()}`,
  ];
  const path = r.next() < 0.4 ? target.path.replace("_", junk()) : target.path;
  return one(`GET ${path.slice(0, 60)}...`, request("GET", `${path}?${r.pick(queries)()}`, auth));
}

function headerAbuse(r: Random, auth: Record<string, string>) {
  const path = r.pick(PATHS).path;
  const kinds: [string, Record<string, string | null>][] = [
    ["huge header", { ...auth, "x-big": "a".repeat(17_000 + r.int(20_000)) }],
    [
      "many headers",
      {
        ...auth,
        ...Object.fromEntries(Array.from({ length: 200 + r.int(800) }, (_, i) => [`x-h${i}`, "v"])),
      },
    ],
    [
      "bad authorization",
      {
        authorization: r.pick([
          "Bearer",
          "Bearer ",
          "Basic Zm9vOmJhcg==",
          "Bearer " + "x".repeat(5000),
          "Bearer trb_\u00ff",
          "bearer  trb_x y",
          "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
        ]),
      },
    ],
    ["duplicate authorization", { authorization: auth.authorization!, Authorization: "Bearer trb_other" }],
    [
      "content-type zoo",
      {
        ...auth,
        "content-type": r.pick([
          "multipart/form-data; boundary=x",
          "application/json; charset=",
          ";;;",
          "application/xml",
          "*/*",
          "application/json\u0000",
        ]),
      },
    ],
    [
      "content-encoding",
      {
        ...auth,
        "content-type": "application/json",
        "content-encoding": r.pick(["gzip", "br", "deflate", "x-compress", "gzip, gzip"]),
      },
    ],
    ["odd expect", { ...auth, expect: r.pick(["200-ok", "100-continue-please", "x"]) }],
    ["no host", { ...auth, host: null }],
    [
      "forwarded-for garbage",
      { ...auth, "x-forwarded-for": r.pick(["1.2.3.4.5", "::::", "a".repeat(500), "127.0.0.1, , ,"]) },
    ],
    [
      "idempotency key abuse",
      {
        ...auth,
        "content-type": "application/json",
        "idempotency-key": r.pick(["", "x".repeat(5000), "\u00e9\u00e9", " key "]),
      },
    ],
    ["accept and range", { ...auth, accept: "text/html", range: "bytes=0-1", "if-none-match": "*" }],
  ];
  const [kind, headers] = r.pick(kinds);
  const body = headers["content-type"] ? '{"organization":{"sub_domain":"globex"}}' : "";
  const method = body ? "POST" : "GET";
  return one(`${kind} on ${method} ${path}`, request(method, path, headers, body));
}

function hostileSpec(r: Random, auth: Record<string, string>) {
  const allocation = '<IPAddressAllocation type="new"><Version>6</Version></IPAddressAllocation>';
  const specs: [string, () => string][] = [
    [
      "entity expansion",
      () =>
        `<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "${"A".repeat(100)}"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>${SPEC_HEAD}<Name>&b;</Name></VirtualMachineSpec>`,
    ],
    [
      "external entity",
      () =>
        `<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>${SPEC_HEAD}<Name>&e;</Name></VirtualMachineSpec>`,
    ],
    ["deep elements", () => SPEC_HEAD + deep(20 + r.int(3000), "<a>", "</a>", "") + "</VirtualMachineSpec>"],
    [
      "many allocations",
      () =>
        `${SPEC_HEAD}<NetworkInterfaces><NetworkInterface><Network by="permalink">lab-1-public</Network>${allocation.repeat(33 + r.int(3000))}</NetworkInterface></NetworkInterfaces></VirtualMachineSpec>`,
    ],
    [
      "many disks",
      () =>
        `${SPEC_HEAD}<SystemDisks>${"<Disk><Size>1</Size></Disk>".repeat(17 + r.int(500))}</SystemDisks></VirtualMachineSpec>`,
    ],
    [
      "huge size",
      () =>
        `${SPEC_HEAD}<SystemDisks><Disk><Size>${r.pick(["99999999999999", "-1", "1e9", "0x10", "NaN"])}</Size></Disk></SystemDisks></VirtualMachineSpec>`,
    ],
    [
      "huge text",
      () =>
        `${SPEC_HEAD}<Description>${"d".repeat(17_000 + r.int(100_000))}</Description></VirtualMachineSpec>`,
    ],
    [
      "processing instructions and CDATA",
      () =>
        `<?xml version="1.0"?><?php system('id') ?>${SPEC_HEAD}<Name><![CDATA[</Name>]]></Name></VirtualMachineSpec>`,
    ],
    ["unclosed", () => SPEC_HEAD.slice(0, r.int(SPEC_HEAD.length))],
    [
      "odd hostname",
      () =>
        `${SPEC_HEAD}<Hostname><Hostname>${r.pick(["-x-", "a".repeat(300), "x..y", "\u00e9t\u00e9", "<script>"])}</Hostname></Hostname></VirtualMachineSpec>`,
    ],
    ["random bytes", () => r.bytes(1 + r.int(300)).toString("latin1")],
    [
      "another format",
      () => r.pick(['{"hostname":', "hostname: [", "--- !!python/object:os.system", "[[[[[[[["]),
    ],
  ];
  const [kind, spec] = r.pick(specs);
  const body = JSON.stringify({ organization: { sub_domain: "globex" }, xml: spec() });
  const path = r.pick(["build_from_spec", "validate_spec"]);
  return one(
    `${kind} to ${path}`,
    request(
      "POST",
      `/core/v1/organizations/_/virtual_machines/${path}`,
      { ...auth, "content-type": "application/json" },
      body,
    ),
  );
}

function protocol(r: Random, auth: Record<string, string>) {
  const path = "/core/v1/organizations?page=1";
  const good = request("GET", path, auth);
  const kinds: (() => Omit<HostileCase, "category">)[] = [
    () => ({
      label: "pipelined, an error in the middle",
      pieces: [
        good +
          request(
            "POST",
            "/core/v1/organizations/_/disks",
            { ...auth, "content-type": "application/json" },
            "{bad",
          ) +
          good,
      ],
      answers: 3,
      asTenant: true,
    }),
    () => {
      const count = 2 + r.int(20);
      return { label: `${count} pipelined`, pieces: [good.repeat(count)], answers: count, asTenant: true };
    },
    () => one("absolute-form target", request("GET", `http://evil.example${path}`, auth)),
    () => one("asterisk target", request(r.pick(["OPTIONS", "GET"]), "*", auth)),
    () => one("CONNECT", `CONNECT 203.0.113.1:443 HTTP/1.1\r\nhost: 203.0.113.1:443\r\n\r\n`),
    () =>
      one(
        "upgrade to websocket",
        request("GET", path, {
          ...auth,
          connection: "upgrade",
          upgrade: "websocket",
          "sec-websocket-key": "x",
          "sec-websocket-version": "13",
        }),
      ),
    () =>
      one(
        "h2c upgrade",
        request("GET", path, {
          ...auth,
          connection: "Upgrade, HTTP2-Settings",
          upgrade: "h2c",
          "http2-settings": "AAMAAABkAAQAAP__",
        }),
      ),
    () => one("HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    () =>
      one("HTTP/1.0 without host", `GET ${path} HTTP/1.0\r\nauthorization: ${auth.authorization}\r\n\r\n`),
    () =>
      one(
        "TLS hello on plain HTTP",
        Buffer.from([0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03]),
      ),
    () =>
      one(
        "GET with a body",
        request("GET", path, { ...auth, "content-type": "application/json" }, '{"page":"x"}'),
      ),
    () => {
      const parts = [
        '{"organization"',
        ':{"sub_domain":"globex"},',
        '"network":{"permalink":"lab-1-public"}}',
      ];
      const length = String(Buffer.byteLength(parts.join("")));
      const head = request("POST", "/core/v1/organizations/_/ip_addresses", {
        ...auth,
        "content-type": "application/json",
        "content-length": length,
      });
      return {
        label: "body trickled in pieces",
        pieces: [head, ...parts],
        gapMs: 50,
        answers: 1,
        asTenant: true,
      };
    },
    () =>
      one(
        "trailers after chunks",
        `POST /core/v1/organizations/_/ip_addresses HTTP/1.1\r\nhost: t\r\nauthorization: ${auth.authorization}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nx-trailer: 1\r\n\r\n`,
      ),
  ];
  return r.pick(kinds)();
}

function crossTenant(r: Random, auth: Record<string, string>, victim: Victim) {
  const v = victim;
  const json = (body: unknown) => ({
    ...auth,
    "content-type": "application/json",
    body: JSON.stringify(body),
  });
  const kinds: [string, string, string, ReturnType<typeof json> | typeof auth][] = [
    ["GET", `/core/v1/virtual_machines/${v.vmId}`, "the VM by path", auth],
    ["GET", `/core/v1/virtual_machines/_?virtual_machine[id]=${v.vmId}`, "the VM by query", auth],
    ["GET", `/core/v1/virtual_machines/builds/${v.buildId}`, "the build", auth],
    [
      "GET",
      `/core/v1/virtual_machines/builds/_/events?virtual_machine_build[id]=${v.buildId}`,
      "the build's events",
      auth,
    ],
    ["GET", `/core/v1/tasks/${v.taskId}`, "the task", auth],
    ["GET", `/core/v1/ip_addresses/${v.ipId}`, "the address", auth],
    ["GET", `/core/v1/ip_addresses/_?ip_address[address]=${v.ipAddress}`, "the address by address", auth],
    ["GET", `/core/v1/disks/${v.diskId}`, "the disk", auth],
    [
      "GET",
      `/core/v1/organizations/_/virtual_machines?organization[sub_domain]=${v.subDomain}`,
      "the VMs",
      auth,
    ],
    ["GET", `/core/v1/organizations/${v.orgId}/policy`, "the limits", auth],
    ["GET", `/core/v1/organizations/_/ip_addresses?organization[id]=${v.orgId}`, "the addresses", auth],
    [
      "PATCH",
      "/core/v1/virtual_machines/_",
      "renaming the VM",
      json({ virtual_machine: { id: v.vmId }, virtual_machine_properties: { name: "mine" } }),
    ],
    [
      "POST",
      "/core/v1/virtual_machines/_/start",
      "starting the VM",
      json({ virtual_machine: { id: v.vmId } }),
    ],
    ["DELETE", "/core/v1/virtual_machines/_", "deleting the VM", json({ virtual_machine: { id: v.vmId } })],
    [
      "POST",
      "/core/v1/virtual_machines/_/allocate_ip",
      "taking the address",
      json({ virtual_machine: { id: v.vmId }, ip_address: { id: v.ipId } }),
    ],
    ["DELETE", "/core/v1/ip_addresses/_", "deleting the address", json({ ip_address: { id: v.ipId } })],
    ["PUT", "/core/v1/disks/_/resize", "resizing the disk", json({ disk: { id: v.diskId }, size_in_gb: 9 })],
    [
      "POST",
      "/core/v1/organizations/_/virtual_machines/build_from_spec",
      "a spec naming the address",
      json({
        organization: { sub_domain: "globex" },
        xml: `${SPEC_HEAD}<NetworkInterfaces><NetworkInterface><Network by="permalink">lab-1-public</Network><IPAddressAllocation type="existing"><IPAddress by="${r.pick(["id", "address"])}">${r.pick([v.ipId, v.ipAddress])}</IPAddress></IPAddressAllocation></NetworkInterface></NetworkInterfaces></VirtualMachineSpec>`,
      }),
    ],
    [
      "POST",
      "/core/v1/organizations/_/virtual_machines/build_from_spec",
      "a spec in the other organization",
      json({ organization: { sub_domain: v.subDomain }, xml: `${SPEC_HEAD}</VirtualMachineSpec>` }),
    ],
  ];
  const [method, target, what, headers] = r.pick(kinds);
  const { body = "", ...rest } = headers as Record<string, string>;
  return {
    ...one(`${what}: ${method} ${target.slice(0, 60)}`, request(method, target, rest, body)),
    mustRefuse: true,
  };
}
