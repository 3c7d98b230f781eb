# REI bot texts, English (/lang). Amounts arrive formatted ("50.00 ₽").

job-progress = ⏳ Generating: { $percent }%
job-done-caption = ✅ Done! Charged: { $charged }
job-done-status = ✅ Done: 100%
job-too-large = ✅ Done, but the file is too large for Telegram ({ $megabytes } MB). Charged: { $charged }
job-failed = ❌ It did not work: { $reason }
    Your money is back on the balance: { $refunded }
job-cancelled = 🚫 Generation cancelled. Your money is back on the balance: { $refunded }

failure-content-refused = the service refused the request ({ $detail })
failure-provider-failed = the generation service did not answer
failure-service-unavailable = the generation service is temporarily unavailable
failure-bad-input = the file cannot be used ({ $detail })
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
