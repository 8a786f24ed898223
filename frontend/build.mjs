// Bundles the browser pages into src/stacklab/web/static/dist/ (run at set-up time: `npm ci && npm run build`).
// Everything the pages load comes from the service itself: xterm.js is bundled here, never fetched from a CDN.
import * as esbuild from "esbuild";
import { mkdirSync, rmSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const outdir = resolve(here, "../src/stacklab/web/static/dist");
const watch = process.argv.includes("--watch");

const options = {
  entryPoints: {
    lab: resolve(here, "src/lab.js"),
    admin: resolve(here, "src/admin.js"),
    course: resolve(here, "src/course.js"),
    "lab-style": resolve(here, "src/lab.css"),
  },
  outdir,
  bundle: true,
  format: "esm",
  target: ["chrome100", "firefox100", "safari15"],
  minify: !watch,
  sourcemap: true,
  legalComments: "linked",
  logLevel: process.argv.includes("--quiet") ? "warning" : "info",
};

if (watch) {
  const ctx = await esbuild.context(options);
  await ctx.watch();
} else {
  rmSync(outdir, { recursive: true, force: true });
  mkdirSync(outdir, { recursive: true });
  await esbuild.build(options);
}
