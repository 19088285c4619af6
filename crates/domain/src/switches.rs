//! Kill switches (safe degradation): what an operator can switch off at runtime.

use serde::{Deserialize, Serialize};

/// The global switches. The default is everything on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Switches {
    /// `true` refuses every write of the public API (reads keep working; the admin API too,
    /// so the operator can switch it back).
    pub read_only: bool,
    /// `false` refuses `POST /checkout`.
    pub checkout_creation: bool,
    /// `false` refuses payment completion (`POST /checkout/{id}/complete`).
    pub payments: bool,
}

impl Default for Switches {
    fn default() -> Self {
        Switches {
            read_only: false,
            checkout_creation: true,
            payments: true,
        }
    }
}

/// What kind of call a request is, as far as the switches care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// A read.
    Read,
    /// A write other than the two below.
    Write,
    /// Creating a checkout.
    CreateCheckout,
    /// Completing a payment.
    CompletePayment,
}

/// Which switch refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchedOff {
    /// The gateway is read-only.
    ReadOnly,
    /// Checkout creation is off.
    CheckoutCreation,
    /// Payment completion is off.
    Payments,
}

impl SwitchedOff {
    /// The switch's name, as in `PUT /admin/switches` (`read_only`, `checkout_creation`,
    /// `payments`).
    pub fn name(self) -> &'static str {
        match self {
            SwitchedOff::ReadOnly => "read_only",
            SwitchedOff::CheckoutCreation => "checkout_creation",
            SwitchedOff::Payments => "payments",
        }
    }

    /// What to tell the caller.
    pub fn reason(self) -> &'static str {
        match self {
            SwitchedOff::ReadOnly => {
                "the gateway is read-only for now (operator switch): reads work, writes are refused"
            }
            SwitchedOff::CheckoutCreation => {
                "checkout creation is switched off for now by the operator; browsing still works"
            }
            SwitchedOff::Payments => {
                "payment completion is switched off for now by the operator; the checkout is kept, try again later"
            }
        }
    }
}

impl Switches {
    /// The switch refusing `operation`, if any.
    pub fn refuses(&self, operation: Operation) -> Option<SwitchedOff> {
        match operation {
            Operation::Read => None,
            _ if self.read_only => Some(SwitchedOff::ReadOnly),
            Operation::CreateCheckout if !self.checkout_creation => {
                Some(SwitchedOff::CheckoutCreation)
            }
            Operation::CompletePayment if !self.payments => Some(SwitchedOff::Payments),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_switch_refuses_only_its_operations() {
        let on = Switches::default();
        for op in [
            Operation::Read,
            Operation::Write,
            Operation::CreateCheckout,
            Operation::CompletePayment,
        ] {
            assert_eq!(on.refuses(op), None);
        }
        let read_only = Switches {
            read_only: true,
            ..on
        };
        assert_eq!(read_only.refuses(Operation::Read), None);
        assert_eq!(
            read_only.refuses(Operation::Write),
            Some(SwitchedOff::ReadOnly)
        );
        assert_eq!(
            read_only.refuses(Operation::CompletePayment),
            Some(SwitchedOff::ReadOnly)
        );
        let no_checkouts = Switches {
            checkout_creation: false,
            ..on
        };
        assert_eq!(
            no_checkouts.refuses(Operation::CreateCheckout),
            Some(SwitchedOff::CheckoutCreation)
        );
        assert_eq!(no_checkouts.refuses(Operation::CompletePayment), None);
        let no_payments = Switches {
            payments: false,
            ..on
        };
        assert_eq!(
            no_payments.refuses(Operation::CompletePayment),
            Some(SwitchedOff::Payments)
        );
        assert_eq!(no_payments.refuses(Operation::Write), None);
    }
}
