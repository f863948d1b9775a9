// A tiny HTTP server configured only through environment variables.
// `npm start` runs it through `envv exec`, which decrypts .env in memory and replaces itself
// with node: node keeps envv's pid, gets signals directly, and no plaintext touches the disk.
const http = require("node:http");

const required = ["DATABASE_URL", "API_TOKEN", "GREETING"];
const missing = required.filter((k) => !(k in process.env));
if (missing.length > 0) {
  console.error(`missing ${missing.join(", ")}: run through \`envv exec -- node server.js\``);
  process.exit(1);
}

const port = Number(process.env.PORT || 3000);
// Never log secret values: show which keys are set and how long they are.
const summary = required.map((k) => `${k} (${process.env[k].length} chars)`).join(", ");
console.log(`${process.env.GREETING}; NODE_ENV=${process.env.NODE_ENV}; loaded ${summary}`);

if (process.argv.includes("--once")) process.exit(0);

const server = http.createServer((_req, res) => {
  res.setHeader("content-type", "text/plain");
  res.end(`${process.env.GREETING}\n`);
});
server.listen(port, () => console.log(`listening on http://localhost:${port}`));
// envv exec replaced itself with node, so Ctrl-C / docker stop reach this handler directly.
process.on("SIGTERM", () => server.close(() => process.exit(0)));
