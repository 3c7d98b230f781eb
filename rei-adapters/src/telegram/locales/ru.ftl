# REI bot texts, Russian (the default language). Amounts arrive formatted ("50.00 ₽").

job-progress = ⏳ Генерация: { $percent }%
job-done-caption = ✅ Готово! Списано: { $charged }
job-done-status = ✅ Готово: 100%
job-too-large = ✅ Готово, но файл слишком большой для Telegram ({ $megabytes } МБ). Списано: { $charged }
job-failed = ❌ Не получилось: { $reason }
    Деньги вернулись на баланс: { $refunded }
job-cancelled = 🚫 Генерация отменена. Деньги вернулись на баланс: { $refunded }

failure-content-refused = сервис отклонил запрос ({ $detail })
failure-provider-failed = сервис генерации не ответил
failure-service-unavailable = сервис генерации временно недоступен
failure-bad-input = файл не подходит ({ $detail })
failure-too-many-attempts = { $attempts ->
    [one] не удалось после { $attempts } попытки
   *[other] не удалось после { $attempts } попыток
}
failure-deadline = генерация заняла больше { $minutes ->
    [one] { $minutes } минуты
   *[other] { $minutes } минут
}

payment-credited = 💰 Баланс пополнен на { $amount }. Текущий баланс: { $balance }
payment-refunded = ↩️ Платёж возвращён: { $amount }. Текущий баланс: { $balance }
balance-credited = 💰 Администратор начислил { $amount }. Текущий баланс: { $balance }
balance-debited = ➖ Администратор списал { $amount }. Текущий баланс: { $balance }

admin-alert = ⚠️ { $provider }: { $kind } — { $message }
