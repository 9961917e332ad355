import { SETTINGS, type Setting } from "./settings.js";
import { stringify } from "yaml";

function valueText(setting: Setting): string {
  if (setting.default === undefined) return "";
  return stringify(setting.default, { flow: true, lineWidth: 0 }).trim();
}

/**
 * A configuration file with every setting commented out at its default, each under its
 * description: the package installs it as /etc/trebuchet/trebuchet.yaml.
 */
export function exampleConfig(): string {
  const lines = [
    "# Trebuchet's configuration. Every setting is shown at its default, commented out:",
    "# remove the leading # of what you change (and of its section). Each setting's",
    "# environment variable overrides it.",
    "# Check a change with: trebuchet config check /etc/trebuchet/trebuchet.yaml",
  ];
  let group: string | undefined;
  for (const setting of SETTINGS) {
    const parts = setting.key.split(".");
    const name = parts.at(-1)!;
    const inGroup = parts.length > 1 ? parts[0] : undefined;
    if (inGroup !== group) {
      lines.push("");
      if (inGroup) lines.push(`#${inGroup}:`);
      group = inGroup;
    } else if (!inGroup) lines.push("");
    // Descriptions are "# ..."; a setting is "#name: value", so removing the "#" uncomments it.
    const doc = inGroup ? "#   " : "# ";
    lines.push(`${doc}${setting.description} (${setting.env})`);
    if (setting.defaultNote) lines.push(`${doc}Default: ${setting.defaultNote}.`);
    lines.push(`#${inGroup ? "  " : ""}${name}: ${valueText(setting)}`.trimEnd());
  }
  return lines.join("\n") + "\n";
}
