// A real OpenID Provider (panva/node-oidc-provider) for the dashboard's login tests, on 127.0.0.1 only.
//
// Test-only: devInteractions (any password logs in as the typed user), fixed cookie keys, http.
// Users: alice (group jwtriage-viewers), bob (another group), carol (listed by e-mail in the test's
// config), dave (group jwtriage-viewers, whose ID tokens expire after SHORT_ID_TOKEN_TTL seconds).
// ID tokens carry the profile, e-mail and groups claims (conformIdTokenClaims off), since Streamlit
// reads the user from the ID token only.
//
//   PORT=9000 CLIENT_ID=jwtriage CLIENT_SECRET=... REDIRECT_URI=http://127.0.0.1:8501/oauth2callback \
//   SHORT_ID_TOKEN_TTL=15 node provider.mjs
import Provider from "oidc-provider";

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;

const USERS = {
  alice: { email: "alice@example.com", name: "Alice", groups: ["jwtriage-viewers"] },
  bob: { email: "bob@example.com", name: "Bob", groups: ["payments-team"] },
  carol: { email: "carol@example.com", name: "Carol", groups: [] },
  dave: { email: "dave@example.com", name: "Dave", groups: ["jwtriage-viewers"] },
};
const SHORT_TTL = Number(process.env.SHORT_ID_TOKEN_TTL || 15);

const configuration = {
  clients: [
    {
      client_id: process.env.CLIENT_ID,
      client_secret: process.env.CLIENT_SECRET,
      redirect_uris: [process.env.REDIRECT_URI],
      post_logout_redirect_uris: [process.env.REDIRECT_URI.replace(/\/oauth2callback$/, "/")],
      grant_types: ["authorization_code"],
      response_types: ["code"],
    },
  ],
  claims: {
    openid: ["sub"],
    email: ["email", "email_verified"],
    profile: ["name", "preferred_username"],
    groups: ["groups"],
  },
  scopes: ["openid", "email", "profile", "groups"],
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: true } },
  pkce: { required: () => false },
  ttl: { IdToken: (ctx, token) => (token.available?.sub === "dave" ? SHORT_TTL : 3600) },
  cookies: { keys: ["jwtriage-test-only-cookie-key"] },
  async findAccount(ctx, id) {
    const user = USERS[id];
    if (!user) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, preferred_username: id, email_verified: true, ...user };
      },
    };
  },
};

const provider = new Provider(issuer, configuration);
provider.listen(port, "127.0.0.1", () => {
  console.log(`oidc-provider ready at ${issuer}`);
});
