// The runner protocol shared by the node runners (validators/README.md): argv is
// JWKS_URL ISSUER AUDIENCE ALGS; one ready line, then one JSON reply per JSON request line.
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

export function packageVersion(name) {
  const url = new URL(`./node_modules/${name}/package.json`, import.meta.url);
  return JSON.parse(readFileSync(url, 'utf8')).version;
}

export function config() {
  const [url, issuer, audience, algs] = process.argv.slice(2, 6);
  return { url, issuer, audience, algorithms: algs.split(',') };
}

// Reads requests in order and answers each before reading the next: the harness changes the
// JWKS between cases, so a reply must not overtake the phase it was asked in.
export async function serve(ready, verify, logged) {
  process.stdout.write(JSON.stringify({ ready: true, ...ready }) + '\n');
  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of lines) {
    if (!line.trim()) continue;
    const request = JSON.parse(line);
    let reply;
    try {
      await verify(request.token);
      reply = { case: request.case, accepted: true };
    } catch (err) {
      reply = {
        case: request.case, accepted: false, error_class: err?.name ?? typeof err, code: err?.code ?? null,
        message: String(err?.message ?? err), logged: logged(err),
      };
    }
    process.stdout.write(JSON.stringify(reply) + '\n');
  }
}
