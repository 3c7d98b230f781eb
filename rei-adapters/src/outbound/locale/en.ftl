# REI bot texts, English (/lang). Amounts arrive formatted ("50.00 ₽").

job-progress = ⏳ Generating: { $percent }%
job-done-caption = ✅ Done! Charged: { $charged }
job-done-status = ✅ Done: 100%
job-too-large = ✅ Done, but the file is too large for Telegram ({ $megabytes } MB). { $caption }
job-download = ✅ Done! The file is large ({ $megabytes } MB): download it here:
    { $link }
    { $caption }
job-download-button = ⬇️ Download
job-resent = This result did not reach you while the bot was blocked: here it is again.
    { $caption }
job-late-caption = ✅ The result came after all, free: your money ({ $refunded }) stays on your balance.
job-failed = ❌ It did not work: { $reason }
    Your money is back on the balance: { $refunded }
job-cancelled = 🚫 Generation cancelled. Your money is back on the balance: { $refunded }

failure-content-refused = the service refused the request ({ $detail })
failure-provider-failed = the generation service did not answer
failure-service-unavailable = the generation service is temporarily unavailable
failure-bad-input = the file cannot be used ({ $detail })
failure-result-too-large = the result is too large for Telegram ({ $megabytes } MB), and the bot cannot give a download link right now
failure-too-many-attempts = { $attempts ->
    [one] gave up after { $attempts } attempt
   *[other] gave up after { $attempts } attempts
}
failure-deadline = generation took longer than { $minutes ->
    [one] { $minutes } minute
   *[other] { $minutes } minutes
}

payment-credited = 💰 Balance topped up by { $amount }. Balance now: { $balance }
payment-refunded = ↩️ Payment refunded: { $amount }. Balance now: { $balance }
balance-credited = 💰 An admin credited { $amount }. Balance now: { $balance }
balance-debited = ➖ An admin debited { $amount }. Balance now: { $balance }

admin-alert = ⚠️ { $provider }: { $kind } — { $message }

## The dialogue

welcome = Hi, { $name }! I generate images and videos.
    Balance: { $balance }
    Send text for a picture, a photo with a caption to edit it, /video for a video.
    Or pick an action below.
signup-bonus = 🎁 A gift for you: { $amount } on your balance. Give it a try!
menu-image = 🖼 Image
menu-video = 🎬 Video
menu-balance = 💰 Balance
menu-topup = 💳 Top up
menu-history = 📜 History
menu-language = 🌐 Language
menu-help = ❓ Help
menu-image-ask = Describe the picture in words, or send a photo with a caption saying what to change.
help = What I do:
    • text → image;
    • photo with a caption → edited image;
    • /video → a video from text, a photo or a video.
    I show the price before anything starts; you pay only for a finished result, and a failure is refunded.
    /balance, /pay to top up, /history, /cancel, /lang, /promo for a promo code, /ref to invite friends.
balance = Balance: { $available } (held: { $held })
history = Recent operations:
    { $entries }
    Recent jobs:
    { $jobs }
history-empty = No operations yet.
history-credit = + { $amount } — { $what }
history-debit = − { $amount } — { $what }
history-refund = ↩ { $amount } — { $what }
history-job = { $n }. { $date } { $what }: { $status }, { $price }
history-job-link = { $n }. { $date } { $what }: { $status }, { $price } — download: { $link }
history-page = Jobs, page { $page }:
    { $jobs }
history-older = Older ▶
history-newer = ◀ Newer
history-repeat = 🔁 { $n }
history-send-again = 📤 { $n }
send-again-queued = Sending the result again.
send-again-under-way = This result is already on its way.
send-again-gone = The file of this result has been deleted — it cannot be sent again.
repeat-input-gone = The file of this request has been deleted — please send it again.
history-legacy-job = { $what }: { $status }, { $price } (old bot)
lang-choose = Choose a language:
lang-ru = Русский
lang-en = English
lang-set = Done: language changed.
cancelled = Cancelled.
nothing-to-cancel = Nothing to cancel.
banned = Your access to the bot is restricted.
unknown-command = I do not know that command. /help shows what I do.
unknown-input = I do not understand this message. /help shows what I do.
button-expired = This button has expired — please start again.
rate-limited = { $seconds ->
    [one] Too many messages. Try again in { $seconds } second.
   *[other] Too many messages. Try again in { $seconds } seconds.
}
images-unavailable = Image generation is not available right now.
video-unavailable = Video generation is not available right now.
video-choose-model = Choose a model:
video-model = { $label }
video-choose-duration = { $model }: choose the length.
video-duration = { $seconds } s — { $price }
video-send-any = Send text (a video from text) or a photo with a caption (animate it).{ $video }
video-send-photo = Send a photo with a caption — this model animates photos.{ $video }
video-send-text = Send text — this model makes videos from text.{ $video }
video-send-video = Send a video with a caption.{ $video }
video-send-video-too = { " " }Or a video with a caption (3–10 s) to change it.
video-use-buttons = Choose with the buttons above, or press /cancel.
video-mode-unsupported = This model cannot do that. These can: { $models }.
video-start-with-command = To make a video from a video, start with /video.
video-to-video-unavailable = Video from video is not available right now.
video-needs-caption = Add a caption to the video: what should change.
video-format = The video must be MP4 or MOV.
video-length = The source video must be { $min } to { $max } seconds long.
photo-needs-caption = Add a caption to the photo: what should change.
image-too-small = The photo is too small: at least { $pixels } pixels on each side.
file-too-large = The file is too large: at most { $megabytes } MB.
file-unavailable = Could not get the file; please send it again.
prompt-empty = Describe what to generate.
prompt-too-long = The description is too long: at most { $max } characters.
draft-image = 🖼 An image from your description. { $look }
    Price: { $price }. Your balance: { $balance }.
draft-edit = 🖼 Photo editing. { $look }
    Price: { $price }. Your balance: { $balance }.
draft-text-video = 🎬 Video from text, { $model }, { $seconds } s, { $aspect }.
    Price: { $price }. Your balance: { $balance }.
look-image = Shape: { $aspect }, size { $size }.
look-auto = the model's choice
look-choice = { $value }
look-chosen = • { $value } •
draft-image-video = 🎬 Video from a photo, { $model }, { $seconds } s.
    Price: { $price }. Your balance: { $balance }.
draft-video-video = 🎬 Video from a video, { $model }; as long as the source, priced as { $seconds } s.
    Price: { $price }. Your balance: { $balance }.
draft-short-of-money = Your balance is too low — top it up: /pay
button-confirm = ✅ Start
button-cancel = ✖ Cancel
draft-cancelled = Cancelled, nothing charged.
draft-already-confirmed = Already started.
draft-expired = ⏳ This offer has expired. Here it is at today's price — confirm it again.
price-changed = The price has changed — here is the new offer.
job-queued = ⏳ Started, { $price } held. The result will arrive here.
insufficient-funds = Not enough money: the price is { $price }, your balance is { $balance }. Top up: /pay
too-many-jobs = At most { $limit } jobs can run at once — wait for a result.
pay-unavailable = Payments are not available right now.
pay-choose = Choose an amount:
pay-amount = { $amount }
pay-link = A payment of { $amount } is ready. Pay with the button — your balance is topped up automatically.
pay-open = 💳 Pay
pay-check = 🔄 Check payment
pay-provider-down = The payment service is not answering; try again later.
pay-check-paid = ✅ Payment received, balance topped up.
pay-check-pending = The payment has not arrived yet.
pay-check-cancelled = The payment was cancelled.
pay-email-ask = The law requires a receipt for every payment: send the e-mail address it should go to (asked once).
pay-email-invalid = That does not look like an e-mail address — send it like name@example.com, or /cancel.
pay-stars-amount = ⭐ { $stars } → { $amount }
stars-invoice-title = Top-up { $amount }
stars-invoice-description = { $amount } on your balance, paid with Telegram Stars.
stars-invoice-expired = This invoice can no longer be paid. Open /pay for a new one.
stars-checkout-unavailable = Payments are briefly unavailable; try again in a minute.
stars-payment-problem = ⚠️ Your payment arrived but could not be credited automatically. The admins have been told and will sort it out.

## Admin

admin-menu = Admin: /add <id> <amount> [reason], /sub <id> <amount> [reason], /ban <id>, /unban <id>, /stats, /newpromo CODE AMOUNT [uses] [YYYY-MM-DD], /promos, /disablepromo CODE, /prices, /setprice PRODUCT AMOUNT, /broadcast TEXT
admin-usage-newpromo = Usage: /newpromo CODE AMOUNT [USES] [YYYY-MM-DD — the last day]
admin-promo-created = Promo code created: { $code } — { $amount }, uses { $used }/{ $limit }, expires: { $expires }, { $state }
admin-promo-exists = Promo code { $code } already exists.
admin-promo-past = That day is already past.
admin-promos = Promo codes:
    { $promos }
admin-promos-empty = No promo codes yet.
admin-usage-broadcast = Usage: /broadcast TEXT [| label=https://link] — then pick the segment and press Start.
admin-broadcast-draft = 📣 Broadcast #{ $id } (draft), to { $segment }: reaches { $reach } users now.
    ———
    { $text }
    { $button }
    { $photo }
admin-broadcast-progress = 📣 Broadcast #{ $id }: { $state }. Sent { $sent } of { $recipients }; blocked { $blocked }, failed { $failed }, unknown { $unknown }, left { $pending }.
admin-broadcast-unknown = There is no broadcast #{ $id }.
admin-broadcast-wrong-state = Broadcast #{ $id } is { $state }: that cannot be done now.
broadcast-segment-all = Everyone
broadcast-segment-paid = Paid
broadcast-segment-active = Active 30 d
broadcast-segment-ru = RU
broadcast-segment-en = EN
broadcast-start = ▶ Start
broadcast-pause = ⏸ Pause
broadcast-cancel = ✖ Cancel
broadcast-progress = 🔄 Progress
admin-usage-disablepromo = Usage: /disablepromo CODE
admin-promo-disabled = Promo code switched off: { $code } — { $amount }, uses { $used }/{ $limit }, expires: { $expires }, { $state }
admin-prices = Prices now (/setprice PRODUCT AMOUNT changes one, in every process within seconds):
    { $prices }
    Video models (/setprice model:ID on|off):
    { $models }
    Top-up amounts (/setprice topups 100,300,500): { $topups }
admin-price-line = { $product } — { $price }
admin-price-set = { $product }: { $before } → { $price }. In force everywhere within seconds; drafts already shown keep their price.
admin-price-unknown = { $product } is not a product: /prices lists them.
admin-usage-setprice = Usage: /setprice PRODUCT AMOUNT (e.g. /setprice image_generation:4k 120), /setprice model:ID on|off, /setprice topups 100,300,500
admin-promo-line = { $code } — { $amount }, uses { $used }/{ $limit }, expires: { $expires }, { $state }
admin-promo-no-limit = ∞
admin-promo-no-expiry = never
admin-promo-on = on
admin-promo-off = off
admin-stats-button = 📊 Statistics
admin-stats = Users: { $users } (banned: { $banned }, blocked the bot: { $unreachable })
    Active in 24 h: { $active }; failed jobs in 24 h: { $failed }
    Balances: { $balances } (held: { $held })
    Revenue: { $revenue }
    Given as bonuses (not paid): { $bonuses }
    Queue: { $queue }
    Jobs:
    { $jobs }
admin-stats-jobs = { $status }: { $count }
admin-added = Credited { $amount } to user { $user }. Balance: { $balance }
admin-subtracted = Debited { $amount } from user { $user }. Balance: { $balance }
admin-sub-too-much = User { $user } has only { $balance }: a balance cannot go below zero.
admin-reason-too-long = The reason is too long.
admin-unknown-user = User { $user } not found.
admin-banned = User { $user } is banned.
admin-unbanned = User { $user } is unbanned.
admin-usage-add = Usage: /add <id> <amount> [reason]
admin-usage-sub = Usage: /sub <id> <amount> [reason]
admin-usage-ban = Usage: /ban <id>
admin-usage-unban = Usage: /unban <id>

## The command menu and errors

command-start = Start
command-help = Help
command-balance = Balance
command-pay = Top up
promo-usage = Write the code after the command: /promo CODE
promo-bad-code = That is not a code: a code is 3–32 Latin letters, digits, "-" or "_".
promo-credited = 🎟 Promo code { $code } redeemed: +{ $amount }. Balance: { $balance }
promo-already-used = You have already redeemed promo code { $code }.
promo-exhausted = Promo code { $code } has run out: every use is taken.
promo-expired = Promo code { $code } has expired.
promo-disabled = Promo code { $code } is switched off.
promo-unknown = There is no promo code { $code }.
command-promo = Promo code
command-ref = Invite friends
ref-info = 🤝 Invite friends with your link:
    { $link }
    You get { $percent }% of every top-up of each friend who starts the bot through it.
    Invited: { $invited }. Earned: { $earned }.
ref-off = 🤝 Your invitation link:
    { $link }
    Rewards for friends' top-ups are not paid at the moment.
    Invited: { $invited }. Earned: { $earned }.
ref-joined = 🤝 You came through a friend's invitation: welcome!
referral-rewarded = 🤝 A friend you invited topped up: +{ $amount } for you. Balance: { $balance }
command-history = History
command-video = Video
command-cancel = Cancel
command-lang = Language
error-generic = Something went wrong. Please try again a little later.
console-usage = REI console: type a text or a /command; #N presses button N; +photo PATH caption sends a photo.
console-result = 📁 File: { $path }
storage-full = 😔 I cannot take files right now: storage is full. The admins know — please try later. Text prompts still work.
sandbox-banner = 🧪 SANDBOX — play money, nothing is charged, no provider is called.
sandbox-checkout-title = Sandbox checkout
sandbox-checkout-body = Top-up of { $amount } for the REI bot. This is the sandbox: nothing is charged, the balance is play money.
sandbox-checkout-pay = Pay { $amount } (sandbox)
sandbox-checkout-cancel = Cancel
sandbox-checkout-paid = Paid (sandbox): { $amount } is on your balance. Go back to the bot.
sandbox-checkout-cancelled = The payment was cancelled. Go back to the bot.
sandbox-checkout-unknown = There is no such sandbox payment.
sandbox-checkout-later = The payment is marked, but the bot could not credit it just now: it will, within a minute.
admin-model-line = { $model } — { $state }
admin-model-on = on
admin-model-off = off
admin-model-switched = Video model { $model }: { $state }. In force everywhere within seconds; drafts already shown keep their model.
admin-model-unknown = { $model } is not a video model of this bot: /prices lists them.
admin-model-last = At least one video model stays on.
admin-topups-set = Top-up amounts now: { $topups }. In force everywhere within seconds.
admin-broadcast-photo = 🖼 with the photo sent, the text as its caption
admin-web-link = 🔐 Your sign-in link to the web admin: it works once, for { $minutes } minutes. Do not forward it.
admin-web-open = Open the web admin
admin-web-off = The web admin is off (ADMIN_WEB=0).
