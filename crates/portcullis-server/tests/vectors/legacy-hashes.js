// Password hashes made by Node's own libraries, for the import test (issue 31): the
// `bcrypt` (native) and `bcryptjs` packages a Passport app uses, and `crypto.scrypt` /
// `crypto.pbkdf2Sync` written as PHC strings by the one-liners of
// docs/migrating-from-passport.md. One JSON object per line.
"use strict";
const crypto = require("crypto");
const bcrypt = require("bcrypt");
const bcryptjs = require("bcryptjs");

const b64 = (buf) => buf.toString("base64").replace(/=+$/, "");
const emit = (username, password, password_hash, made_by) =>
  console.log(JSON.stringify({ username, password, password_hash, made_by }));

let pw = "node bcrypt password";
emit("node-bcrypt", pw, bcrypt.hashSync(pw, 10), "bcrypt (npm, native) cost 10");
pw = "bcryptjs password";
emit("node-bcryptjs", pw, bcryptjs.hashSync(pw, 10), "bcryptjs cost 10");
// PHP-style $2y$ (bcryptjs reads and writes $2a$/$2b$; the prefix is the only change).
pw = "bcrypt 2y password";
emit("node-bcrypt-2y", pw, bcryptjs.hashSync(pw, 9).replace(/^\$2[ab]\$/, "$2y$"), "bcryptjs cost 9 as $2y$");

pw = "node scrypt password";
let salt = crypto.randomBytes(16);
let key = crypto.scryptSync(pw, salt, 32, { N: 16384, r: 8, p: 1 });
emit("node-scrypt", pw, `$scrypt$ln=14,r=8,p=1$${b64(salt)}$${b64(key)}`, "crypto.scryptSync");

pw = "node pbkdf2 password";
salt = crypto.randomBytes(16);
key = crypto.pbkdf2Sync(pw, salt, 310000, 32, "sha256");
emit("node-pbkdf2", pw, `$pbkdf2-sha256$i=310000,l=32$${b64(salt)}$${b64(key)}`, "crypto.pbkdf2Sync sha256");
