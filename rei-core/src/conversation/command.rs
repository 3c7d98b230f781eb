//! Commands: a front end reads its own syntax (Telegram: `/name@bot args`) into a name
//! and arguments; core decides what they mean, because who may use which is a business
//! rule (admin commands are unknown commands for everyone else).

use crate::ids::UserId;
use crate::money::Money;

/// A user command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Register, show balance and menu; with the start payload of a deep link
    /// (`ref_<code>`: a referral).
    Start(Option<String>),
    /// What the bot does.
    Help,
    /// The balance.
    Balance,
    /// Top up.
    Pay,
    /// Recent ledger entries and jobs.
    History,
    /// Start the video dialogue.
    Video,
    /// Leave the current dialogue.
    Cancel,
    /// Choose the language.
    Lang,
    /// Redeem a promo code.
    Promo(String),
    /// The user's referral link and earnings.
    Ref,
    /// An admin command (only for `ADMIN_IDS`).
    Admin(AdminCommand),
}

/// An admin command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminCommand {
    /// The admin menu.
    Menu,
    /// Create a promo code.
    NewPromo {
        /// The code as typed.
        code: String,
        /// What one redemption credits.
        amount: Money,
        /// How many users may redeem it.
        uses: Option<u32>,
        /// When it stops working (the day after the last day, UTC).
        expires_at: Option<crate::time::Timestamp>,
    },
    /// List the promo codes.
    Promos,
    /// Switch a promo code off.
    DisablePromo {
        /// The code as typed.
        code: String,
    },
    /// Compose a broadcast: its text, and an optional `| label=https://url` button.
    Broadcast {
        /// The message.
        text: String,
        /// `label=https://url`.
        button: Option<String>,
    },
    /// List the live prices.
    Prices,
    /// A one-time sign-in link to the web admin.
    Web,
    /// Set a live price, switch a video model on or off, or set the top-up amounts.
    SetPrice {
        /// The product as `/prices` names it, `model:<id>`, or `topups`.
        product: String,
        /// Rubles; `on`/`off`; `100,300,500`.
        value: String,
    },
    /// Credit a user.
    Add {
        /// Whom.
        target: UserId,
        /// How much.
        amount: Money,
        /// Why (audited).
        reason: String,
    },
    /// Debit a user (never below zero).
    Sub {
        /// Whom.
        target: UserId,
        /// How much.
        amount: Money,
        /// Why (audited).
        reason: String,
    },
    /// Ban a user.
    Ban {
        /// Whom.
        target: UserId,
    },
    /// Unban a user.
    Unban {
        /// Whom.
        target: UserId,
    },
    /// Statistics.
    Stats,
}

/// Why a command is not accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandError {
    /// Not a command this user has.
    Unknown,
    /// A known command with bad arguments: the locale key of its usage line.
    Usage(&'static str),
}

impl Command {
    /// The command `name` with `args` (as [`Input::Command`](super::Input::Command)
    /// carries them). Admin commands are unknown unless `is_admin`; names are
    /// case-insensitive.
    ///
    /// # Errors
    /// [`CommandError::Unknown`] for a command this user does not have,
    /// [`CommandError::Usage`] for bad arguments.
    pub fn parse(name: &str, args: &[String], is_admin: bool) -> Result<Self, CommandError> {
        let name = name.to_ascii_lowercase();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let plain = Ok;
        match name.as_str() {
            "start" => plain(Self::Start(args.first().map(|a| (*a).to_owned()))),
            "ref" => plain(Self::Ref),
            "help" => plain(Self::Help),
            "balance" => plain(Self::Balance),
            "pay" => plain(Self::Pay),
            "history" => plain(Self::History),
            "video" => plain(Self::Video),
            "cancel" => plain(Self::Cancel),
            "lang" => plain(Self::Lang),
            "promo" => match args.as_slice() {
                [code] => plain(Self::Promo((*code).to_owned())),
                _ => Err(CommandError::Usage("promo-usage")),
            },
            "admin" | "add" | "sub" | "ban" | "unban" | "stats" | "newpromo" | "promos"
            | "disablepromo" | "prices" | "setprice" | "broadcast"
                if !is_admin =>
            {
                Err(CommandError::Unknown)
            }
            "admin" => plain(Self::Admin(AdminCommand::Menu)),
            "stats" => plain(Self::Admin(AdminCommand::Stats)),
            "promos" => plain(Self::Admin(AdminCommand::Promos)),
            "prices" => plain(Self::Admin(AdminCommand::Prices)),
            "web" => plain(Self::Admin(AdminCommand::Web)),
            "broadcast" => {
                let all = args.join(" ");
                let (text, button) = match all.rsplit_once(" | ") {
                    Some((text, button)) => {
                        (text.trim().to_owned(), Some(button.trim().to_owned()))
                    }
                    None => (all.trim().to_owned(), None),
                };
                if text.is_empty() {
                    Err(CommandError::Usage("admin-usage-broadcast"))
                } else {
                    plain(Self::Admin(AdminCommand::Broadcast { text, button }))
                }
            }
            "disablepromo" => match args.as_slice() {
                [code] => plain(Self::Admin(AdminCommand::DisablePromo {
                    code: (*code).to_owned(),
                })),
                _ => Err(CommandError::Usage("admin-usage-disablepromo")),
            },
            "setprice" => match args.as_slice() {
                [product, value] => Ok(Self::Admin(AdminCommand::SetPrice {
                    product: (*product).to_owned(),
                    value: (*value).to_owned(),
                })),
                _ => Err(CommandError::Usage("admin-usage-setprice")),
            },
            "newpromo" => new_promo(&args).map(Self::Admin),
            "add" | "sub" => money_command(&name, &args).map(Self::Admin),
            "ban" | "unban" => target_command(&name, &args).map(Self::Admin),
            _ => Err(CommandError::Unknown),
        }
    }
}

fn money_command(name: &str, args: &[&str]) -> Result<AdminCommand, CommandError> {
    let usage = if name == "add" {
        "admin-usage-add"
    } else {
        "admin-usage-sub"
    };
    let (Some(target), Some(amount)) = (args.first(), args.get(1)) else {
        return Err(CommandError::Usage(usage));
    };
    let target = target
        .parse::<i64>()
        .ok()
        .and_then(|t| UserId::new(t).ok())
        .ok_or(CommandError::Usage(usage))?;
    let amount: Money = amount.parse().map_err(|_| CommandError::Usage(usage))?;
    if amount.is_zero() {
        return Err(CommandError::Usage(usage));
    }
    let reason = args.get(2..).map(|r| r.join(" ")).unwrap_or_default();
    Ok(if name == "add" {
        AdminCommand::Add {
            target,
            amount,
            reason,
        }
    } else {
        AdminCommand::Sub {
            target,
            amount,
            reason,
        }
    })
}

/// `/newpromo CODE AMOUNT [USES] [YYYY-MM-DD]`.
fn new_promo(args: &[&str]) -> Result<AdminCommand, CommandError> {
    let usage = CommandError::Usage("admin-usage-newpromo");
    let (Some(code), Some(amount)) = (args.first(), args.get(1)) else {
        return Err(usage);
    };
    let amount: Money = amount.parse().map_err(|_| usage.clone())?;
    let mut uses = None;
    let mut expires_at = None;
    for arg in args.get(2..).unwrap_or_default() {
        if let Some((y, rest)) = arg.split_once('-') {
            let (m, d) = rest.split_once('-').ok_or_else(|| usage.clone())?;
            let day = (y.parse(), m.parse(), d.parse());
            let (Ok(y), Ok(m), Ok(d)) = day else {
                return Err(usage);
            };
            if expires_at.is_some() {
                return Err(usage);
            }
            expires_at =
                Some(crate::time::Timestamp::after_day(y, m, d).ok_or_else(|| usage.clone())?);
        } else if uses.is_none() && expires_at.is_none() {
            uses = Some(arg.parse().map_err(|_| usage.clone())?);
        } else {
            return Err(usage);
        }
    }
    Ok(AdminCommand::NewPromo {
        code: (*code).to_owned(),
        amount,
        uses,
        expires_at,
    })
}

fn target_command(name: &str, args: &[&str]) -> Result<AdminCommand, CommandError> {
    let usage = if name == "ban" {
        "admin-usage-ban"
    } else {
        "admin-usage-unban"
    };
    let target = match args {
        [one] => one
            .parse::<i64>()
            .ok()
            .and_then(|t| UserId::new(t).ok())
            .ok_or(CommandError::Usage(usage))?,
        _ => return Err(CommandError::Usage(usage)),
    };
    Ok(if name == "ban" {
        AdminCommand::Ban { target }
    } else {
        AdminCommand::Unban { target }
    })
}
