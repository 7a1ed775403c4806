// An OpenID Connect provider for the upstream sign-in tests: panva's oidc-provider
// (npm, pinned by .ci/run), independently written and certified, on loopback, with its
// development sign-in and consent pages (any login name signs in as that person).
//
// node oidc_provider.mjs PORT CLIENT_ID CLIENT_SECRET REDIRECT_URI
// Prints "listening" once it answers. A person's claims come from their login name:
// sub NAME (oidc-provider's account id), preferred_username NAME, email
// NAME@example.test (verified), except that a name beginning with "unverified-" has
// its address unverified.
import Provider from "oidc-provider";

const [port, clientId, clientSecret, redirectUri] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: [redirectUri],
      grant_types: ["authorization_code"],
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_basic",
    },
  ],
  claims: {
    openid: ["sub"],
    email: ["email", "email_verified"],
    profile: ["preferred_username", "name"],
  },
  // The ID token carries the claims (no userinfo call needed).
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true } },
  cookies: { keys: ["portcullis-test-cookie-key"] },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          preferred_username: id,
          name: id,
          email: `${id.replace(/^unverified-/, "")}@example.test`,
          email_verified: !id.startsWith("unverified-"),
        };
      },
    };
  },
});
provider.listen(Number(port), "127.0.0.1", () => console.log("listening"));
