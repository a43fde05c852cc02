// The API reference of every published package: one entry point per "@uffd/source" export of each
// packages/*/package.json that is not private, so a new package or entry is covered without an
// edit here. Every public export, class member and field must carry a doc comment: validation
// warnings (notDocumented, notExported, invalidLink) are errors.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const packagesDir = fileURLToPath(new URL("../../packages/", import.meta.url));

/** [package name, source entry files] for every published package. */
export function publishedPackages() {
  const out = [];
  for (const dir of readdirSync(packagesDir).sort()) {
    let manifest;
    try {
      manifest = JSON.parse(readFileSync(join(packagesDir, dir, "package.json"), "utf8"));
    } catch {
      continue;
    }
    if (manifest.private === true) continue;
    const entries = Object.values(manifest.exports ?? {})
      .filter((t) => t !== null && typeof t === "object" && typeof t["@uffd/source"] === "string")
      .map((t) => join(packagesDir, dir, t["@uffd/source"]));
    out.push([manifest.name, entries]);
  }
  return out;
}

const packages = publishedPackages();

/**
 * The web address of the repository, from the packages' own `repository` field, so source links
 * ("Defined in") do not depend on the checkout's git remote: a clone with no remote, or one
 * cloned from a local path, builds the same reference.
 */
function repositoryWebUrl() {
  const manifest = JSON.parse(readFileSync(join(packagesDir, "kernel", "package.json"), "utf8"));
  return String(manifest.repository.url).replace(/^git\+/, "").replace(/\.git$/, "");
}

/** @type {Partial<import("typedoc").TypeDocOptions>} */
export default {
  name: "uffd",
  entryPoints: packages.flatMap(([, entries]) => entries),
  entryPointStrategy: "resolve",
  tsconfig: fileURLToPath(new URL("./tsconfig.json", import.meta.url)),
  readme: "none",
  disableGit: true,
  basePath: fileURLToPath(new URL("../../", import.meta.url)),
  gitRevision: "main",
  sourceLinkTemplate: `${repositoryWebUrl()}/blob/{gitRevision}/{path}#L{line}`,
  out: fileURLToPath(new URL("../../docs/api", import.meta.url)),
  excludePrivate: true,
  excludeProtected: true,
  excludeInternal: true,
  excludeExternals: true,
  validation: { notExported: true, invalidLink: true, notDocumented: true },
  packagesRequiringDocumentation: packages.map(([name]) => name),
  treatWarningsAsErrors: true,
};
