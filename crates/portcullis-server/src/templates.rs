//! The mails the server sends, from templates an operator can override.
//!
//! Each mail has a subject, a plain-text body and an HTML body, with placeholders in
//! double braces: `{{username}}`, `{{link}}`, `{{valid_for}}`, `{{issuer}}`, `{{email}}`.
//! Built-in texts serve by default; with `mail_templates` set to a folder, a file
//! `NAME.subject`, `NAME.txt` or `NAME.html` there replaces that part of mail NAME
//! (`verify`, `change`, `change-notice`, `reset`, `password-changed`). The files are
//! read and checked at start: an unknown placeholder, or a mail that carries a link
//! without `{{link}}` in both bodies, stops the server with the file's name.
//!
//! Hand-written rather than a template engine: five fixed mails, five placeholders,
//! no logic; what matters is that every value is escaped in the HTML body (and that
//! no value can add a header line to the subject), which this file owns and tests.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context as _, bail};

/// One mail's three parts.
#[derive(Clone, Debug)]
struct Template {
    subject: String,
    text: String,
    html: String,
}

/// Which mail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MailKind {
    /// Confirms the account's address (signup, resend).
    Verify,
    /// Confirms a new address (to the new address).
    Change,
    /// Tells the old address that a change was asked for (no link).
    ChangeNotice,
    /// A password-reset link.
    Reset,
    /// Tells the account's address that its password changed (no link).
    PasswordChanged,
}

impl MailKind {
    const ALL: [MailKind; 5] = [
        MailKind::Verify,
        MailKind::Change,
        MailKind::ChangeNotice,
        MailKind::Reset,
        MailKind::PasswordChanged,
    ];

    /// The template's file name, without extension.
    pub fn name(self) -> &'static str {
        match self {
            MailKind::Verify => "verify",
            MailKind::Change => "change",
            MailKind::ChangeNotice => "change-notice",
            MailKind::Reset => "reset",
            MailKind::PasswordChanged => "password-changed",
        }
    }

    fn has_link(self) -> bool {
        matches!(self, MailKind::Verify | MailKind::Change | MailKind::Reset)
    }

    fn builtin(self) -> Template {
        let (subject, text, html): (&str, &str, &str) = match self {
            MailKind::Verify => (
                "Confirm your email address",
                "Hello {{username}},\n\nConfirm that this is your email address by opening this link (it works once, for {{valid_for}}):\n\n{{link}}\n\nIf you did not create an account at {{issuer}}, ignore this message.\n",
                "<p>Hello {{username}},</p><p>Confirm that this is your email address by opening this link (it works once, for {{valid_for}}):</p><p><a href=\"{{link}}\">Confirm my address</a></p><p>If you did not create an account at {{issuer}}, ignore this message.</p>",
            ),
            MailKind::Change => (
                "Confirm your new email address",
                "Hello {{username}},\n\nYou asked to use this address ({{email}}) for your account at {{issuer}}. Confirm it by opening this link (it works once, for {{valid_for}}):\n\n{{link}}\n\nIf you did not ask for this, ignore this message: nothing changes.\n",
                "<p>Hello {{username}},</p><p>You asked to use this address ({{email}}) for your account at {{issuer}}. Confirm it by opening this link (it works once, for {{valid_for}}):</p><p><a href=\"{{link}}\">Confirm my new address</a></p><p>If you did not ask for this, ignore this message: nothing changes.</p>",
            ),
            MailKind::ChangeNotice => (
                "Your email address is being changed",
                "Hello {{username}},\n\nSomeone signed in to your account at {{issuer}} asked to replace this address with another one. It changes only once the new address is confirmed.\n\nIf this was not you, sign in and change your password now: whoever asked knows it.\n",
                "<p>Hello {{username}},</p><p>Someone signed in to your account at {{issuer}} asked to replace this address with another one. It changes only once the new address is confirmed.</p><p>If this was not you, sign in and change your password now: whoever asked knows it.</p>",
            ),
            MailKind::Reset => (
                "Reset your password",
                "Hello {{username}},\n\nSomeone (we hope you) asked to reset the password of your account at {{issuer}}. To choose a new one, open this link (it works once, for {{valid_for}}):\n\n{{link}}\n\nIf you did not ask for this, ignore this message: your password stays as it is.\n",
                "<p>Hello {{username}},</p><p>Someone (we hope you) asked to reset the password of your account at {{issuer}}. To choose a new one, open this link (it works once, for {{valid_for}}):</p><p><a href=\"{{link}}\">Choose a new password</a></p><p>If you did not ask for this, ignore this message: your password stays as it is.</p>",
            ),
            MailKind::PasswordChanged => (
                "Your password was changed",
                "Hello {{username}},\n\nThe password of your account at {{issuer}} was just changed, and every other sign-in of yours ended.\n\nIf this was not you, reset your password at once from the sign-in page.\n",
                "<p>Hello {{username}},</p><p>The password of your account at {{issuer}} was just changed, and every other sign-in of yours ended.</p><p>If this was not you, reset your password at once from the sign-in page.</p>",
            ),
        };
        Template {
            subject: subject.into(),
            text: text.into(),
            html: html.into(),
        }
    }
}

const PLACEHOLDERS: [&str; 5] = ["username", "link", "valid_for", "issuer", "email"];

/// The values of one mail's placeholders.
#[derive(Debug, Default)]
pub struct Values<'a> {
    pub username: &'a str,
    pub link: &'a str,
    pub valid_for: &'a str,
    pub issuer: &'a str,
    pub email: &'a str,
}

impl Values<'_> {
    fn get(&self, name: &str) -> &str {
        match name {
            "username" => self.username,
            "link" => self.link,
            "valid_for" => self.valid_for,
            "issuer" => self.issuer,
            "email" => self.email,
            _ => "",
        }
    }
}

/// A rendered mail.
#[derive(Debug)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Every mail's template.
#[derive(Clone, Debug)]
pub struct Templates(HashMap<MailKind, Template>);

impl Default for Templates {
    fn default() -> Self {
        Templates(MailKind::ALL.iter().map(|k| (*k, k.builtin())).collect())
    }
}

impl Templates {
    /// The built-in templates, with each file of `folder` (if set) in place of its
    /// part; checked (see the module's documentation).
    pub fn load(folder: Option<&Path>) -> anyhow::Result<Templates> {
        let mut templates = Templates::default();
        if let Some(folder) = folder {
            if !folder.is_dir() {
                bail!("mail_templates: {} is not a folder", folder.display());
            }
            for entry in std::fs::read_dir(folder)
                .with_context(|| format!("mail_templates: reading {}", folder.display()))?
            {
                let path = entry?.path();
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default();
                if name.starts_with('.') {
                    continue;
                }
                let known = MailKind::ALL.iter().any(|k| {
                    [".subject", ".txt", ".html"]
                        .iter()
                        .any(|ext| name == format!("{}{ext}", k.name()))
                });
                if !known {
                    bail!(
                        "mail_templates: {} is not one of NAME.subject, NAME.txt, NAME.html \
                         for NAME in verify, change, change-notice, reset, password-changed",
                        path.display()
                    );
                }
            }
            for kind in MailKind::ALL {
                let t = templates.0.entry(kind).or_insert_with(|| kind.builtin());
                for (ext, part) in [
                    ("subject", &mut t.subject),
                    ("txt", &mut t.text),
                    ("html", &mut t.html),
                ] {
                    let path = folder.join(format!("{}.{ext}", kind.name()));
                    match std::fs::read_to_string(&path) {
                        Ok(text) => {
                            *part = if ext == "subject" {
                                text.trim().to_owned()
                            } else {
                                text
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(e).with_context(|| format!("reading {}", path.display()));
                        }
                    }
                }
            }
        }
        for (kind, t) in &templates.0 {
            for (part, text) in [("subject", &t.subject), ("txt", &t.text), ("html", &t.html)] {
                let names = placeholders(text)
                    .with_context(|| format!("mail template {}.{part}", kind.name()))?;
                if kind.has_link() && part != "subject" && !names.contains(&"link") {
                    bail!(
                        "mail template {}.{part}: the mail carries a link and has no {{{{link}}}}",
                        kind.name()
                    );
                }
            }
            if t.subject.is_empty() || t.subject.contains(['\r', '\n']) {
                bail!(
                    "mail template {}.subject must be one line, not empty",
                    kind.name()
                );
            }
        }
        Ok(templates)
    }

    /// Mail `kind` with `values`: escaped for HTML in the HTML body; line breaks taken
    /// out of values in the subject.
    pub fn render(&self, kind: MailKind, values: &Values<'_>) -> Rendered {
        let t = self.0.get(&kind).cloned().unwrap_or_else(|| kind.builtin());
        Rendered {
            subject: fill(&t.subject, values, |v| v.replace(['\r', '\n'], " ")),
            text: fill(&t.text, values, str::to_owned),
            html: fill(&t.html, values, |v| maud::html! { (v) }.into_string()),
        }
    }
}

/// The placeholders of `text`, each a known one, every `{{` closed.
fn placeholders(text: &str) -> anyhow::Result<Vec<&'static str>> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            bail!("a {{{{ is never closed");
        };
        let name = after[..end].trim();
        let Some(known) = PLACEHOLDERS.iter().find(|p| **p == name) else {
            bail!(
                "unknown placeholder {{{{{name}}}}} (known: {})",
                PLACEHOLDERS.join(", ")
            );
        };
        found.push(*known);
        rest = &after[end + 2..];
    }
    Ok(found)
}

/// `text` with each placeholder replaced by its value, through `escape`. Values are
/// never scanned for placeholders themselves.
fn fill(text: &str, values: &Values<'_>, escape: impl Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(text.len() + 128);
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                out.push_str(&escape(values.get(after[..end].trim())));
                rest = &after[end + 2..];
            }
            None => {
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values<'a>(username: &'a str, link: &'a str) -> Values<'a> {
        Values {
            username,
            link,
            valid_for: "30 minutes",
            issuer: "https://id.example.com",
            email: "a@example.com",
        }
    }

    #[test]
    fn values_are_escaped_in_html_and_kept_off_new_subject_lines() {
        let t = Templates::load(None).unwrap();
        let r = t.render(
            MailKind::Reset,
            &values(
                "<b>eve</b>\"&",
                "https://id.example.com/reset-password?token=abc",
            ),
        );
        assert!(
            r.html.contains("&lt;b&gt;eve&lt;/b&gt;&quot;&amp;"),
            "{}",
            r.html
        );
        assert!(!r.html.contains("<b>eve"));
        assert!(r.text.contains("<b>eve</b>"));
        assert!(
            r.text
                .contains("https://id.example.com/reset-password?token=abc")
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("verify.subject"), "Hi {{username}}\n").unwrap();
        let t = Templates::load(Some(dir.path())).unwrap();
        let r = t.render(MailKind::Verify, &values("a\r\nBcc: x@evil", "l"));
        assert_eq!(r.subject, "Hi a  Bcc: x@evil");
        // A value that looks like a placeholder stays as it is.
        let r = t.render(MailKind::Verify, &values("{{link}}", "L"));
        assert_eq!(r.subject, "Hi {{link}}");
    }

    #[test]
    fn an_operators_files_replace_their_part_and_are_checked_at_start() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("reset.txt"),
            "Go to {{ link }} within {{valid_for}}.",
        )
        .unwrap();
        let t = Templates::load(Some(dir.path())).unwrap();
        let r = t.render(MailKind::Reset, &values("ann", "https://x/r"));
        assert_eq!(r.text, "Go to https://x/r within 30 minutes.");
        assert!(
            r.html.contains("Choose a new password"),
            "the built-in HTML stays"
        );

        std::fs::write(dir.path().join("reset.txt"), "No link here").unwrap();
        let e = format!("{:#}", Templates::load(Some(dir.path())).unwrap_err());
        assert!(e.contains("reset.txt") && e.contains("{{link}}"), "{e}");

        std::fs::write(dir.path().join("reset.txt"), "{{link}} {{password}}").unwrap();
        let e = format!("{:#}", Templates::load(Some(dir.path())).unwrap_err());
        assert!(e.contains("unknown placeholder {{password}}"), "{e}");

        std::fs::remove_file(dir.path().join("reset.txt")).unwrap();
        std::fs::write(dir.path().join("welcome.txt"), "hi").unwrap();
        let e = format!("{:#}", Templates::load(Some(dir.path())).unwrap_err());
        assert!(e.contains("welcome.txt"), "{e}");
    }
}
