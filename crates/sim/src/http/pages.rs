//! The wallet's approval pages: plain HTML forms that work without JavaScript.
//!
//! A person follows the verification link (or types the code), sees who asks, what is
//! bought and the exact amount, and presses Approve (`name="decision" value="approve"`) or
//! Reject (`value="reject"`).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::Deserialize;

use crate::wallet_core::{Decision, DeviceView, StepUpView, WalletCore};

type Core = web::Data<WalletCore>;

/// Escapes text for HTML element content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn page(status: StatusCode, title: &str, body: &str) -> HttpResponse {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title} · WSIM Wallet</title>\
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem;color:#1a1a1a}}\
.amount{{font-size:2rem;font-weight:700;margin:.5rem 0}}.card{{border:1px solid #ccc;border-radius:8px;padding:1rem 1.25rem}}\
button{{font-size:1rem;padding:.6rem 1.4rem;margin:.5rem .5rem 0 0;border-radius:6px;border:1px solid #888;cursor:pointer}}\
button[value=approve]{{background:#0a7d32;color:#fff;border-color:#0a7d32}}.muted{{color:#555}}</style>\
</head><body><h1>WSIM Wallet</h1>{body}</body></html>",
        title = escape(title),
    );
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .body(html)
}

fn code_form(message: &str) -> String {
    format!(
        "<p>{}</p><form method=\"get\" action=\"device\">\
<label for=\"code\">Code shown by your assistant</label><br>\
<input id=\"code\" name=\"code\" autocomplete=\"off\" placeholder=\"WSIM-XXXXXX\" required>\
<button type=\"submit\">Continue</button></form>",
        escape(message)
    )
}

fn device_card(view: &DeviceView) -> String {
    let amount = view
        .amount
        .map(|m| {
            format!(
                "<p class=\"amount\" id=\"amount\">{}</p>",
                escape(&m.formatted())
            )
        })
        .unwrap_or_default();
    let description = view
        .agent_description
        .as_deref()
        .map(|d| format!("<p id=\"items\">{}</p>", escape(d)))
        .unwrap_or_default();
    format!(
        "<div class=\"card\"><p class=\"muted\">Payment request from</p>\
<p id=\"merchant\"><strong>{}</strong></p>{description}{amount}\
<p class=\"muted\">Code <code id=\"user-code\">{}</code> · access: {}</p></div>",
        escape(&view.agent_name),
        escape(&view.user_code),
        escape(&view.scopes.join(", ")),
    )
}

#[derive(Deserialize)]
pub(crate) struct CodeQuery {
    code: Option<String>,
}

/// `GET /m/device[?code=...]`.
pub(crate) async fn device_page(core: Core, query: web::Query<CodeQuery>) -> HttpResponse {
    let Some(code) = query.code.as_deref().filter(|c| !c.trim().is_empty()) else {
        return page(
            StatusCode::OK,
            "Enter code",
            &code_form("Enter the code to review the payment."),
        );
    };
    let Some(view) = core.device_view(code) else {
        return page(
            StatusCode::NOT_FOUND,
            "Unknown code",
            &code_form("That code is not known. Check it and try again."),
        );
    };
    let card = device_card(&view);
    if view.expired && view.decision == Decision::Pending {
        return page(
            StatusCode::GONE,
            "Expired",
            &format!("{card}<p>This request has expired. Ask your assistant to start again.</p>"),
        );
    }
    match view.decision {
        Decision::Approved => page(
            StatusCode::OK,
            "Approved",
            &format!("{card}<p id=\"result\">You approved this payment.</p>"),
        ),
        Decision::Rejected => page(
            StatusCode::OK,
            "Rejected",
            &format!("{card}<p id=\"result\">You rejected this payment.</p>"),
        ),
        Decision::Pending => page(
            StatusCode::OK,
            "Approve payment",
            &format!(
                "{card}<form method=\"post\" action=\"device\">\
<input type=\"hidden\" name=\"user_code\" value=\"{}\">\
<button type=\"submit\" name=\"decision\" value=\"approve\">Approve</button>\
<button type=\"submit\" name=\"decision\" value=\"reject\">Reject</button></form>",
                escape(&view.user_code)
            ),
        ),
    }
}

#[derive(Deserialize)]
pub(crate) struct DecisionForm {
    user_code: Option<String>,
    decision: Option<String>,
}

fn approve_flag(decision: Option<&str>) -> Option<bool> {
    match decision {
        Some("approve") => Some(true),
        Some("reject") => Some(false),
        _ => None,
    }
}

/// `POST /m/device` with `user_code` and `decision`.
pub(crate) async fn device_decision(core: Core, form: web::Form<DecisionForm>) -> HttpResponse {
    let (Some(code), Some(approve)) = (
        form.user_code.as_deref(),
        approve_flag(form.decision.as_deref()),
    ) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            &code_form("The form was incomplete. Enter the code again."),
        );
    };
    match core.decide_device(code, approve) {
        Ok(view) => {
            let outcome = if approve {
                "Payment approved. You can return to your assistant; it will finish the order."
            } else {
                "Payment rejected. Nothing will be charged."
            };
            page(
                StatusCode::OK,
                if approve { "Approved" } else { "Rejected" },
                &format!("{}<p id=\"result\">{outcome}</p>", device_card(&view)),
            )
        }
        Err(error) => {
            let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_REQUEST);
            page(
                status,
                "Not possible",
                &format!("<p id=\"result\">{}</p>", escape(&error.message)),
            )
        }
    }
}

fn step_up_card(view: &StepUpView) -> String {
    format!(
        "<div class=\"card\"><p class=\"muted\">Larger payment to</p><p id=\"merchant\"><strong>{}</strong></p>\
<p class=\"amount\" id=\"amount\">{}</p><p class=\"muted\">This payment is above your agent's limit.</p></div>",
        escape(&view.merchant),
        escape(&view.amount.formatted()),
    )
}

/// `GET /m/step-up/{id}`.
pub(crate) async fn step_up_page(core: Core, id: web::Path<String>) -> HttpResponse {
    let Some(view) = core.step_up_view(&id) else {
        return page(
            StatusCode::NOT_FOUND,
            "Unknown request",
            "<p>This approval request is not known.</p>",
        );
    };
    let card = step_up_card(&view);
    match (view.decision, view.expired) {
        (Decision::Pending, true) => page(
            StatusCode::GONE,
            "Expired",
            &format!("{card}<p>This request has expired.</p>"),
        ),
        (Decision::Pending, false) => page(
            StatusCode::OK,
            "Approve payment",
            &format!(
                "{card}<form method=\"post\" action=\"\">\
<button type=\"submit\" name=\"decision\" value=\"approve\">Approve</button>\
<button type=\"submit\" name=\"decision\" value=\"reject\">Reject</button></form>"
            ),
        ),
        (Decision::Approved, _) => page(
            StatusCode::OK,
            "Approved",
            &format!("{card}<p id=\"result\">You approved this payment.</p>"),
        ),
        (Decision::Rejected, _) => page(
            StatusCode::OK,
            "Rejected",
            &format!("{card}<p id=\"result\">You rejected this payment.</p>"),
        ),
    }
}

/// `POST /m/step-up/{id}` with `decision`.
pub(crate) async fn step_up_decision(
    core: Core,
    id: web::Path<String>,
    form: web::Form<DecisionForm>,
) -> HttpResponse {
    let Some(approve) = approve_flag(form.decision.as_deref()) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            "<p>Choose Approve or Reject.</p>",
        );
    };
    match core.decide_step_up(&id, approve) {
        Ok(view) => page(
            StatusCode::OK,
            if approve { "Approved" } else { "Rejected" },
            &format!(
                "{}<p id=\"result\">{}</p>",
                step_up_card(&view),
                if approve {
                    "Payment approved."
                } else {
                    "Payment rejected. Nothing will be charged."
                }
            ),
        ),
        Err(error) => {
            let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_REQUEST);
            page(
                status,
                "Not possible",
                &format!("<p id=\"result\">{}</p>", escape(&error.message)),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
