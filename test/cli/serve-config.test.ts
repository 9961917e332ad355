import { describe, expect, it } from "vitest";
import { serverConfigFromEnv } from "../../src/cli/serve-command.js";
import { DEFAULT_ORGANIZATION_LIMITS } from "../../src/lifecycle/quota.js";

describe("serve settings from the environment", () => {
  it("reads every HTTP limit, and none when none is set", () => {
    const config = serverConfigFromEnv("/tmp/x", {
      TREBUCHET_HEADERS_TIMEOUT_MS: "5000",
      TREBUCHET_BODY_TIMEOUT_MS: "7000",
      TREBUCHET_KEEP_ALIVE_TIMEOUT_MS: "3000",
      TREBUCHET_MAX_REQUESTS_PER_CONNECTION: "100",
      TREBUCHET_MAX_CONNECTIONS: "500",
      TREBUCHET_MAX_CONNECTIONS_PER_ADDRESS: "50",
      TREBUCHET_MAX_URL_BYTES: "2048",
      TREBUCHET_MAX_HEADER_BYTES: "8192",
    });
    expect(config.httpLimits).toEqual({
      headersTimeoutMs: 5000,
      bodyTimeoutMs: 7000,
      keepAliveTimeoutMs: 3000,
      maxRequestsPerConnection: 100,
      maxConnections: 500,
      maxConnectionsPerAddress: 50,
      maxUrlBytes: 2048,
      maxHeaderBytes: 8192,
    });
    expect(serverConfigFromEnv("/tmp/x", {}).httpLimits).toBeUndefined();
  });

  it("refuses a limit that is not a positive whole number, naming the variable", () => {
    expect(() => serverConfigFromEnv("/tmp/x", { TREBUCHET_BODY_TIMEOUT_MS: "5s" })).toThrow(
      /TREBUCHET_BODY_TIMEOUT_MS must be a whole number, got "5s"/,
    );
    expect(() => serverConfigFromEnv("/tmp/x", { TREBUCHET_MAX_CONNECTIONS: "0" })).toThrow(
      /TREBUCHET_MAX_CONNECTIONS must be at least 1/,
    );
  });

  it("reads organizations' default limits over the built-in ones, and refuses a bad one", () => {
    expect(serverConfigFromEnv("/tmp/x", {}).organizationLimits).toEqual(DEFAULT_ORGANIZATION_LIMITS);
    const config = serverConfigFromEnv("/tmp/x", {
      TREBUCHET_ORGANIZATION_LIMITS: "virtual_machines=5,unallocated_ip_addresses=unlimited",
    });
    expect(config.organizationLimits).toEqual({
      ...DEFAULT_ORGANIZATION_LIMITS,
      virtual_machines: 5,
      unallocated_ip_addresses: null,
    });
    expect(() => serverConfigFromEnv("/tmp/x", { TREBUCHET_ORGANIZATION_LIMITS: "memory=5" })).toThrow(
      /TREBUCHET_ORGANIZATION_LIMITS: "memory=5" is not a limit/,
    );
  });
});
