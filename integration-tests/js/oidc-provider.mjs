// A real OpenID Connect provider for the portal's login tests: the `oidc-provider` package
// (certified by the OpenID Foundation), on loopback, with its development login screens.
//
//   node oidc-provider.mjs CLIENT_ID CLIENT_SECRET REDIRECT_URI
//
// Listens on a free port of 127.0.0.1 and prints `issuer http://127.0.0.1:PORT` once it
// serves; stops when its standard input closes (the test ended). Any login name is accepted
// with any password; the account's `sub` is the login name, and its `resident_id` claim
// (scope `resident`) is the login name with `jp-` before it, so a test can tell the two apart.
import Provider from 'oidc-provider';
import { createServer } from 'node:http';

const [clientId, clientSecret, redirectUri] = process.argv.slice(2);
if (!clientId || !clientSecret || !redirectUri) {
  console.error('usage: node oidc-provider.mjs CLIENT_ID CLIENT_SECRET REDIRECT_URI');
  process.exit(2);
}

const server = createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    pkce: { required: () => true },
    scopes: ['openid', 'resident'],
    claims: { openid: ['sub'], resident: ['resident_id'] },
    // The resident's claim goes into the ID token, where the portal reads it.
    conformIdTokenClaims: false,
    findAccount: async (ctx, sub) => ({
      accountId: sub,
      claims: async () => ({ sub, resident_id: `jp-${sub}` }),
    }),
    features: { devInteractions: { enabled: true } },
    cookies: { keys: ['xroad-rs test provider, not a secret'] },
    ttl: { Session: 600, Interaction: 600, Grant: 600 },
  });
  provider.proxy = false;
  server.on('request', provider.callback());
  console.log(`issuer ${issuer}`);
});

process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
process.stdin.on('close', () => process.exit(0));
