// Passkeys on Portcullis's pages. The server starts and finishes every WebAuthn
// ceremony (webauthn-rs checks the signatures, the challenge, the origin and user
// verification); this script only carries bytes between the server's JSON and the
// browser's navigator.credentials, base64url on one side, ArrayBuffers on the other.
// Buttons with data-passkey="register" | "sign-in" | "second-step" start it; no other
// script runs on the pages.
(function () {
  "use strict";

  function decode(text) {
    var s = text.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) { s += "="; }
    var bin = atob(s);
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { out[i] = bin.charCodeAt(i); }
    return out.buffer;
  }

  function encode(buffer) {
    var bytes = new Uint8Array(buffer);
    var bin = "";
    for (var i = 0; i < bytes.length; i++) { bin += String.fromCharCode(bytes[i]); }
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function ids(list) {
    (list || []).forEach(function (c) { c.id = decode(c.id); });
  }

  function asJson(credential) {
    var r = credential.response;
    var response = { clientDataJSON: encode(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = encode(r.attestationObject);
    } else {
      response.authenticatorData = encode(r.authenticatorData);
      response.signature = encode(r.signature);
      response.userHandle = r.userHandle ? encode(r.userHandle) : null;
    }
    return {
      id: credential.id,
      rawId: encode(credential.rawId),
      type: credential.type,
      response: response,
      extensions: credential.getClientExtensionResults ? credential.getClientExtensionResults() : {}
    };
  }

  function say(text) {
    var box = document.getElementById("passkey-error");
    if (box) { box.textContent = text; box.hidden = false; }
  }

  async function post(path, body) {
    var r = await fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body)
    });
    var answer = r.status === 204 ? {} : await r.json();
    if (!r.ok) { throw new Error(answer.error_description || ("refused: " + r.status)); }
    return answer;
  }

  function field(id) {
    var f = document.getElementById(id);
    return f ? f.value : "";
  }

  async function register(button) {
    var started = await post("/auth/webauthn/register/start", { password: field("passkey-password") });
    var options = started.publicKey;
    options.challenge = decode(options.challenge);
    options.user.id = decode(options.user.id);
    ids(options.excludeCredentials);
    var created = await navigator.credentials.create({ publicKey: options });
    var done = await post("/auth/webauthn/register/finish", {
      ceremony: started.ceremony,
      credential: asJson(created),
      label: field("passkey-label")
    });
    var then = button.dataset.then || "/account?done=passkey-added";
    if (done.recovery_codes) { showCodes(done.recovery_codes, then); return; }
    window.location.assign(then);
  }

  // The account's first factor came with recovery codes: shown once, here, before
  // going on (built as text nodes: nothing the server sent is read as markup).
  function showCodes(codes, then) {
    var main = document.querySelector("main");
    while (main.firstChild) { main.removeChild(main.firstChild); }
    var h1 = document.createElement("h1");
    h1.textContent = "Your passkey is added";
    var p = document.createElement("p");
    p.textContent = "Keep these recovery codes somewhere safe. Each one signs you in once if you lose your passkey. They are shown this once.";
    var list = document.createElement("ol");
    list.id = "recovery-codes";
    codes.forEach(function (c) {
      var li = document.createElement("li");
      var code = document.createElement("code");
      code.textContent = c;
      li.appendChild(code);
      list.appendChild(li);
    });
    var next = document.createElement("a");
    next.id = "codes-saved";
    next.href = then;
    next.textContent = "I have saved them";
    main.appendChild(h1);
    main.appendChild(p);
    main.appendChild(list);
    main.appendChild(next);
  }

  async function signIn(button, mfaToken) {
    var started = await post("/auth/webauthn/login/start", mfaToken ? { mfa_token: mfaToken } : {});
    var options = started.publicKey;
    options.challenge = decode(options.challenge);
    ids(options.allowCredentials);
    var got = await navigator.credentials.get({ publicKey: options });
    await post("/session/webauthn/login/finish", { ceremony: started.ceremony, credential: asJson(got) });
    window.location.assign(button.dataset.then || "/account");
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-passkey]");
    if (!button) { return; }
    event.preventDefault();
    var kind = button.dataset.passkey;
    var run = kind === "register" ? register(button)
      : signIn(button, kind === "second-step" ? button.dataset.mfaToken : null);
    run.catch(function (e) { say(e.message || String(e)); });
  });
})();
