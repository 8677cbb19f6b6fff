//! Delivery channels behind one trait: e-mail over SMTP (a relay of the deployment, with
//! `STARTTLS` when it offers it is not done yet: see the README's settings) and SMS
//! through an HTTP gateway (a webhook: `POST {to, text}` as JSON with a configured
//! authorisation header). A channel either accepts a message (`Ok`) or says why not, and
//! the job is tried again later. Addresses are checked before use: nothing a record holds
//! can add a header or an SMTP command.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use base64::Engine as _;

/// What a channel sends: a subject (e-mail) and a short text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub subject: String,
    pub text: String,
}

/// A way to reach a person.
pub trait Channel: Send + Sync {
    /// Its name (`email`, `sms`), also the delivery record's.
    fn name(&self) -> &'static str;

    /// The person's address for this channel from a FHIR `telecom` entry, if it is one.
    fn address(&self, telecom: &serde_json::Value) -> Option<String>;

    /// Hand the message over; `Err` says why it was not accepted.
    fn send(&self, to: &str, message: &Message) -> Result<(), String>;
}

/// An e-mail address safe to put into SMTP commands and headers.
pub fn email_address(s: &str) -> Option<String> {
    let s = s.trim().trim_start_matches("mailto:");
    let (local, domain) = s.split_once('@')?;
    let ok = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_graphic() && !"<>()[],;:\\\"@".contains(c));
    (s.len() <= 254 && ok(local) && ok(domain) && domain.contains('.')).then(|| s.to_string())
}

/// A phone number as the gateway wants it: `+` and digits.
pub fn phone_number(s: &str) -> Option<String> {
    let digits: String = s.chars().filter(char::is_ascii_digit).collect();
    (7..=15).contains(&digits.len()).then(|| format!("+{digits}"))
}

/// E-mail through an SMTP relay.
pub struct Smtp {
    pub host: String,
    pub port: u16,
    /// The sender's address (`From`, `MAIL FROM`).
    pub from: String,
    pub timeout: Duration,
}

impl Smtp {
    /// From `smtp://host:port` and the sender's address.
    pub fn new(url: &str, from: &str) -> Result<Smtp, String> {
        let rest = url.strip_prefix("smtp://").ok_or_else(|| format!("{url}: an SMTP address is smtp://HOST:PORT"))?;
        let (host, port) = match rest.trim_end_matches('/').rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| format!("{url}: the port is not a number"))?),
            None => (rest.trim_end_matches('/'), 25),
        };
        let from = email_address(from).ok_or_else(|| format!("{from}: not an e-mail address"))?;
        Ok(Smtp { host: host.to_string(), port, from, timeout: Duration::from_secs(30) })
    }
}

/// One SMTP reply: its code and text (all lines).
fn reply(r: &mut impl BufRead) -> Result<(u16, String), String> {
    let mut text = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).map_err(|e| format!("the mail server: {e}"))? == 0 {
            return Err("the mail server closed the connection".into());
        }
        let code = line
            .get(..3)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| format!("the mail server said {line:?}"))?;
        text.push_str(line.get(4..).unwrap_or("").trim_end());
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok((code, text));
        }
        text.push(' ');
    }
}

/// Send a command (or nothing) and expect a reply of one of `ok`.
fn step(w: &mut TcpStream, r: &mut impl BufRead, command: Option<&str>, ok: &[u16]) -> Result<(), String> {
    if let Some(c) = command {
        w.write_all(format!("{c}\r\n").as_bytes()).map_err(|e| format!("the mail server: {e}"))?;
    }
    let (code, text) = reply(r)?;
    if ok.contains(&code) {
        return Ok(());
    }
    let what = command.map_or("the greeting".to_string(), |c| c.split(':').next().unwrap_or(c).to_string());
    Err(format!("the mail server refused {what}: {code} {text}"))
}

/// A header value in UTF-8 (RFC 2047).
fn encoded_word(s: &str) -> String {
    if s.is_ascii() {
        return s.to_string();
    }
    format!("=?UTF-8?B?{}?=", base64::engine::general_purpose::STANDARD.encode(s))
}

impl Smtp {
    /// The message as sent after `DATA` (headers, a base64 body, the final dot).
    fn data(&self, to: &str, m: &Message) -> String {
        let body = base64::engine::general_purpose::STANDARD.encode(m.text.as_bytes());
        let lines: Vec<&str> = body.as_bytes().chunks(76).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect();
        let date = jiff::Timestamp::now().strftime("%a, %d %b %Y %H:%M:%S +0000");
        let domain = self.from.split('@').nth(1).unwrap_or("medkarta");
        format!(
            "From: {} <{}>\r\nTo: <{to}>\r\nSubject: {}\r\nDate: {date}\r\nMessage-ID: <{}@{domain}>\r\n\
             MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\
             \r\n{}\r\n.",
            encoded_word("Медкарта"),
            self.from,
            encoded_word(&m.subject),
            uuid::Uuid::new_v4().simple(),
            lines.join("\r\n")
        )
    }
}

impl Channel for Smtp {
    fn name(&self) -> &'static str {
        "email"
    }

    fn address(&self, telecom: &serde_json::Value) -> Option<String> {
        (telecom["system"] == "email").then(|| telecom["value"].as_str().and_then(email_address)).flatten()
    }

    fn send(&self, to: &str, m: &Message) -> Result<(), String> {
        let to = email_address(to).ok_or_else(|| "not an e-mail address".to_string())?;
        let addr = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| format!("the mail server {}: {e}", self.host))?
            .next()
            .ok_or_else(|| format!("the mail server {} has no address", self.host))?;
        let mut w =
            TcpStream::connect_timeout(&addr, self.timeout).map_err(|e| format!("the mail server {addr}: {e}"))?;
        w.set_read_timeout(Some(self.timeout)).map_err(|e| e.to_string())?;
        w.set_write_timeout(Some(self.timeout)).map_err(|e| e.to_string())?;
        let mut r = BufReader::new(w.try_clone().map_err(|e| e.to_string())?);
        step(&mut w, &mut r, None, &[220])?;
        step(&mut w, &mut r, Some("EHLO medkarta"), &[250])?;
        step(&mut w, &mut r, Some(&format!("MAIL FROM:<{}>", self.from)), &[250])?;
        step(&mut w, &mut r, Some(&format!("RCPT TO:<{to}>")), &[250, 251])?;
        step(&mut w, &mut r, Some("DATA"), &[354])?;
        step(&mut w, &mut r, Some(&self.data(&to, m)), &[250])?;
        let _ = step(&mut w, &mut r, Some("QUIT"), &[221]);
        Ok(())
    }
}

/// SMS through an HTTP gateway.
pub struct SmsWebhook {
    pub url: String,
    /// The `Authorization` header's value (a secret: never logged).
    pub authorization: Option<String>,
    agent: ureq::Agent,
}

impl SmsWebhook {
    pub fn new(url: &str, authorization: Option<String>) -> Result<SmsWebhook, String> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!("{url}: the SMS gateway's address is http(s)://..."));
        }
        let agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(30))).build().into();
        Ok(SmsWebhook { url: url.to_string(), authorization, agent })
    }
}

impl Channel for SmsWebhook {
    fn name(&self) -> &'static str {
        "sms"
    }

    fn address(&self, telecom: &serde_json::Value) -> Option<String> {
        let mobile = telecom["system"] == "sms" || (telecom["system"] == "phone" && telecom["use"] == "mobile");
        mobile.then(|| telecom["value"].as_str().and_then(phone_number)).flatten()
    }

    fn send(&self, to: &str, m: &Message) -> Result<(), String> {
        let to = phone_number(to).ok_or_else(|| "not a phone number".to_string())?;
        let mut req = self.agent.post(&self.url);
        if let Some(a) = &self.authorization {
            req = req.header("Authorization", a);
        }
        match req.send_json(serde_json::json!({"to": to, "text": m.text})) {
            Ok(_) => Ok(()),
            Err(ureq::Error::StatusCode(code)) => Err(format!("the SMS gateway answered {code}")),
            Err(e) => Err(format!("the SMS gateway: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_cannot_inject_commands_or_headers() {
        assert_eq!(email_address("anna@example.ru").as_deref(), Some("anna@example.ru"));
        assert_eq!(email_address("mailto:anna@example.ru").as_deref(), Some("anna@example.ru"));
        for bad in ["anna@example.ru>\r\nRCPT TO:<x@y.z", "anna", "a b@c.d", "<a@b.c>", "a@b", "анна@пример.рф"]
        {
            assert_eq!(email_address(bad), None, "{bad:?}");
        }
        assert_eq!(phone_number("+7 (912) 345-67-89").as_deref(), Some("+79123456789"));
        assert_eq!(phone_number("12"), None);
    }

    #[test]
    fn smtp_settings_and_the_message() {
        let s = Smtp::new("smtp://127.0.0.1:2525", "noreply@medkarta.example").unwrap();
        assert_eq!((s.host.as_str(), s.port), ("127.0.0.1", 2525));
        assert!(Smtp::new("http://x", "a@b.c").is_err() && Smtp::new("smtp://x", "nobody").is_err());
        let data = s.data("anna@example.ru", &Message { subject: "Новое сообщение".into(), text: "Текст\n.".into() });
        assert!(data.contains("Subject: =?UTF-8?B?") && data.contains("To: <anna@example.ru>\r\n"), "{data}");
        assert!(data.ends_with("\r\n.") && !data.contains("\r\n.\r\n"), "one final dot, none in the body: {data}");
    }
}
