# REI bot texts, Russian (the default language). Amounts arrive formatted ("50.00 ₽").

job-progress = ⏳ Генерация: { $percent }%
job-done-caption = ✅ Готово! Списано: { $charged }
job-done-status = ✅ Готово: 100%
job-too-large = ✅ Готово, но файл слишком большой для Telegram ({ $megabytes } МБ). { $caption }
job-download = ✅ Готово! Файл большой ({ $megabytes } МБ) — скачайте его по ссылке:
    { $link }
    { $caption }
job-download-button = ⬇️ Скачать
job-resent = Пока бот был у вас заблокирован, этот результат не дошёл — отправляю снова.
    { $caption }
job-late-caption = ✅ Результат всё-таки пришёл — бесплатно: деньги ({ $refunded }) остались у вас на балансе.
job-failed = ❌ Не получилось: { $reason }
    Деньги вернулись на баланс: { $refunded }
job-cancelled = 🚫 Генерация отменена. Деньги вернулись на баланс: { $refunded }

failure-content-refused = сервис отклонил запрос ({ $detail })
failure-provider-failed = сервис генерации не ответил
failure-service-unavailable = сервис генерации временно недоступен
failure-bad-input = файл не подходит ({ $detail })
failure-result-too-large = результат слишком большой для Telegram ({ $megabytes } МБ), а ссылку для скачивания бот сейчас выдать не может
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

## The dialogue

welcome = Привет, { $name }! Я генерирую изображения и видео.
    Баланс: { $balance }
    Отправьте текст — нарисую картинку; фото с подписью — отредактирую; /video — видео.
    Или выберите действие кнопками ниже.
signup-bonus = 🎁 Вам подарок: { $amount } на баланс. Попробуйте!
menu-image = 🖼 Картинка
menu-video = 🎬 Видео
menu-balance = 💰 Баланс
menu-topup = 💳 Пополнить
menu-history = 📜 История
menu-language = 🌐 Язык
menu-help = ❓ Помощь
menu-image-ask = Опишите картинку текстом — или пришлите фото с подписью, что в нём изменить.
help = Что я умею:
    • текст → изображение;
    • фото с подписью → отредактированное изображение;
    • /video → видео из текста, фото или видео.
    Перед запуском я покажу цену; деньги списываются только за готовый результат, при ошибке — возвращаются.
    /balance — баланс, /pay — пополнить, /history — история, /cancel — отменить, /lang — язык, /promo — промокод, /ref — пригласить друзей.
balance = Баланс: { $available } (в резерве: { $held })
history = Последние операции:
    { $entries }
    Последние задачи:
    { $jobs }
history-empty = Операций пока нет.
history-credit = + { $amount } — { $what }
history-debit = − { $amount } — { $what }
history-refund = ↩ { $amount } — { $what }
history-job = { $n }. { $date } { $what }: { $status }, { $price }
history-job-link = { $n }. { $date } { $what }: { $status }, { $price } — скачать: { $link }
history-page = Задачи, страница { $page }:
    { $jobs }
history-older = Старше ▶
history-newer = ◀ Новее
history-repeat = 🔁 { $n }
history-send-again = 📤 { $n }
send-again-queued = Отправляю результат ещё раз.
send-again-under-way = Этот результат уже отправляется.
send-again-gone = Файл этого результата уже удалён — отправить его снова нельзя.
repeat-input-gone = Исходный файл этой задачи уже удалён — отправьте его заново.
history-legacy-job = { $what }: { $status }, { $price } (старый бот)
lang-choose = Выберите язык:
lang-ru = Русский
lang-en = English
lang-set = Готово: язык изменён.
cancelled = Отменено.
nothing-to-cancel = Отменять нечего.
banned = Доступ к боту ограничен.
unknown-command = Не знаю такой команды. /help — что я умею.
unknown-input = Не понимаю такое сообщение. /help — что я умею.
button-expired = Эта кнопка устарела — начните заново.
rate-limited = { $seconds ->
    [one] Слишком много сообщений. Попробуйте через { $seconds } секунду.
    [few] Слишком много сообщений. Попробуйте через { $seconds } секунды.
   *[other] Слишком много сообщений. Попробуйте через { $seconds } секунд.
}
images-unavailable = Генерация изображений сейчас недоступна.
video-unavailable = Генерация видео сейчас недоступна.
video-choose-model = Выберите модель:
video-model = { $label }
video-choose-duration = { $model }: выберите длительность.
video-duration = { $seconds } с — { $price }
video-send-any = Отправьте текст (видео из текста) или фото с подписью (оживить фото).{ $video }
video-send-photo = Отправьте фото с подписью — эта модель оживляет фото.{ $video }
video-send-text = Отправьте текст — эта модель делает видео из текста.{ $video }
video-send-video = Отправьте видео с подписью.{ $video }
video-send-video-too = { " " }Или видео с подписью (3–10 с) — изменю его.
video-use-buttons = Выберите вариант кнопками выше или нажмите /cancel.
video-mode-unsupported = Эта модель так не умеет. Подойдут: { $models }.
video-start-with-command = Чтобы сделать видео из видео, начните с /video.
video-to-video-unavailable = Видео из видео сейчас недоступно.
video-needs-caption = Добавьте к видео подпись — что с ним сделать.
video-format = Нужно видео в формате MP4 или MOV.
video-length = Исходное видео должно длиться от { $min } до { $max } секунд.
photo-needs-caption = Добавьте к фото подпись — что с ним сделать.
image-too-small = Фото слишком маленькое: нужно не меньше { $pixels } пикселей по каждой стороне.
file-too-large = Файл слишком большой: не больше { $megabytes } МБ.
file-unavailable = Не удалось получить файл, отправьте его ещё раз.
prompt-empty = Опишите, что нужно сгенерировать.
prompt-too-long = Описание слишком длинное: не больше { $max } символов.
draft-image = 🖼 Изображение по описанию. { $look }
    Цена: { $price }. Ваш баланс: { $balance }.
draft-edit = 🖼 Редактирование фото. { $look }
    Цена: { $price }. Ваш баланс: { $balance }.
draft-text-video = 🎬 Видео из текста, { $model }, { $seconds } с, формат { $aspect }.
    Цена: { $price }. Ваш баланс: { $balance }.
look-image = Формат: { $aspect }, размер { $size }.
look-auto = как выберет модель
look-choice = { $value }
look-chosen = • { $value } •
draft-image-video = 🎬 Видео из фото, { $model }, { $seconds } с.
    Цена: { $price }. Ваш баланс: { $balance }.
draft-video-video = 🎬 Видео из видео, { $model }; длительность как у исходного, цена как за { $seconds } с.
    Цена: { $price }. Ваш баланс: { $balance }.
draft-short-of-money = На балансе не хватает денег — пополните его: /pay
button-confirm = ✅ Запустить
button-cancel = ✖ Отмена
draft-cancelled = Отменено, ничего не списано.
draft-already-confirmed = Уже запущено.
draft-expired = ⏳ Это предложение устарело. Вот оно по сегодняшней цене — подтвердите ещё раз.
price-changed = Цена изменилась — вот новое предложение.
job-queued = ⏳ Запущено, в резерве { $price }. Пришлю результат сюда.
insufficient-funds = Не хватает денег: цена { $price }, на балансе { $balance }. Пополнить: /pay
too-many-jobs = Одновременно можно запустить не больше { $limit } задач — дождитесь результата.
pay-unavailable = Оплата сейчас недоступна.
pay-choose = Выберите сумму пополнения:
pay-amount = { $amount }
pay-link = Платёж на { $amount } создан. Оплатите по кнопке — баланс пополнится автоматически.
pay-open = 💳 Оплатить
pay-check = 🔄 Проверить оплату
pay-provider-down = Платёжный сервис не отвечает, попробуйте позже.
pay-check-paid = ✅ Оплата получена, баланс пополнен.
pay-check-pending = Оплата ещё не поступила.
pay-check-cancelled = Платёж отменён.
pay-email-ask = По закону на каждый платёж выдаётся чек: пришлите e-mail, куда его отправить (спрошу один раз).
pay-email-invalid = Это не похоже на e-mail — пришлите адрес вида name@example.com или /cancel.
pay-stars-amount = ⭐ { $stars } → { $amount }
stars-invoice-title = Пополнение на { $amount }
stars-invoice-description = { $amount } на баланс, оплата звёздами Telegram.
stars-invoice-expired = Этот счёт больше нельзя оплатить. Откройте /pay, чтобы получить новый.
stars-checkout-unavailable = Оплата ненадолго недоступна, попробуйте через минуту.
stars-payment-problem = ⚠️ Оплата пришла, но не зачислена автоматически. Администраторы уже знают и всё исправят.

## Admin

admin-menu = Админ-панель: /add <id> <сумма> [причина], /sub <id> <сумма> [причина], /ban <id>, /unban <id>, /stats, /newpromo КОД СУММА [активаций] [ГГГГ-ММ-ДД], /promos, /disablepromo КОД, /prices, /setprice ТОВАР СУММА, /broadcast ТЕКСТ
admin-usage-newpromo = Использование: /newpromo КОД СУММА [АКТИВАЦИЙ] [ГГГГ-ММ-ДД — последний день]
admin-promo-created = Промокод создан: { $code } — { $amount }, активаций { $used }/{ $limit }, срок: { $expires }, { $state }
admin-promo-exists = Промокод { $code } уже есть.
admin-promo-past = Этот день уже прошёл.
admin-promos = Промокоды:
    { $promos }
admin-promos-empty = Промокодов пока нет.
admin-usage-broadcast = Использование: /broadcast ТЕКСТ [| подпись=https://ссылка] — затем выберите аудиторию и нажмите «Запустить».
admin-broadcast-draft = 📣 Рассылка #{ $id } (черновик), аудитория { $segment }: сейчас получат { $reach } польз.
    ———
    { $text }
    { $button }
    { $photo }
admin-broadcast-progress = 📣 Рассылка #{ $id }: { $state }. Отправлено { $sent } из { $recipients }; заблокировали { $blocked }, ошибок { $failed }, неизвестно { $unknown }, осталось { $pending }.
admin-broadcast-unknown = Рассылки #{ $id } нет.
admin-broadcast-wrong-state = Рассылка #{ $id } в состоянии { $state }: сейчас это сделать нельзя.
broadcast-segment-all = Все
broadcast-segment-paid = Платившие
broadcast-segment-active = Активные 30 дн
broadcast-segment-ru = RU
broadcast-segment-en = EN
broadcast-start = ▶ Запустить
broadcast-pause = ⏸ Пауза
broadcast-cancel = ✖ Отменить
broadcast-progress = 🔄 Прогресс
admin-usage-disablepromo = Использование: /disablepromo КОД
admin-promo-disabled = Промокод отключён: { $code } — { $amount }, активаций { $used }/{ $limit }, срок: { $expires }, { $state }
admin-prices = Цены сейчас (/setprice ТОВАР СУММА меняет одну, во всех процессах за секунды):
    { $prices }
    Видеомодели (/setprice model:ID on|off):
    { $models }
    Суммы пополнения (/setprice topups 100,300,500): { $topups }
admin-price-line = { $product } — { $price }
admin-price-set = { $product }: { $before } → { $price }. Действует везде через несколько секунд; уже показанные черновики сохраняют свою цену.
admin-price-unknown = { $product } — нет такого товара: список в /prices.
admin-usage-setprice = Использование: /setprice ТОВАР СУММА (например, /setprice image_generation:4k 120), /setprice model:ID on|off, /setprice topups 100,300,500
admin-promo-line = { $code } — { $amount }, активаций { $used }/{ $limit }, срок: { $expires }, { $state }
admin-promo-no-limit = ∞
admin-promo-no-expiry = бессрочно
admin-promo-on = включён
admin-promo-off = отключён
admin-stats-button = 📊 Статистика
admin-stats = Пользователей: { $users } (забанено: { $banned }, заблокировали бота: { $unreachable })
    Активных за 24 ч: { $active }; неудачных задач за 24 ч: { $failed }
    Балансы: { $balances } (в резерве: { $held })
    Выручка: { $revenue }
    Подарено бонусами (не оплачено): { $bonuses }
    Очередь: { $queue }
    Задачи:
    { $jobs }
admin-stats-jobs = { $status }: { $count }
admin-added = Пользователю { $user } начислено { $amount }. Баланс: { $balance }
admin-subtracted = У пользователя { $user } списано { $amount }. Баланс: { $balance }
admin-sub-too-much = У пользователя { $user } только { $balance }: ниже нуля списать нельзя.
admin-reason-too-long = Причина слишком длинная.
admin-unknown-user = Пользователь { $user } не найден.
admin-banned = Пользователь { $user } заблокирован.
admin-unbanned = Пользователь { $user } разблокирован.
admin-usage-add = Формат: /add <id> <сумма> [причина]
admin-usage-sub = Формат: /sub <id> <сумма> [причина]
admin-usage-ban = Формат: /ban <id>
admin-usage-unban = Формат: /unban <id>

## The command menu and errors

command-start = Начать
command-help = Помощь
command-balance = Баланс
command-pay = Пополнить баланс
promo-usage = Напишите код после команды: /promo КОД
promo-bad-code = Такого кода не бывает: код — это 3–32 латинские буквы, цифры, «-» или «_».
promo-credited = 🎟 Промокод { $code } активирован: +{ $amount }. Баланс: { $balance }
promo-already-used = Вы уже активировали промокод { $code }.
promo-exhausted = Промокод { $code } закончился: все активации использованы.
promo-expired = Срок действия промокода { $code } истёк.
promo-disabled = Промокод { $code } отключён.
promo-unknown = Промокода { $code } нет.
command-promo = Промокод
command-ref = Пригласить друзей
ref-info = 🤝 Приглашайте друзей по вашей ссылке:
    { $link }
    Вы получаете { $percent }% от каждого пополнения друга, который запустил бота по ней.
    Приглашено: { $invited }. Заработано: { $earned }.
ref-off = 🤝 Ваша ссылка-приглашение:
    { $link }
    Вознаграждения за пополнения друзей сейчас не начисляются.
    Приглашено: { $invited }. Заработано: { $earned }.
ref-joined = 🤝 Вы пришли по приглашению друга: добро пожаловать!
referral-rewarded = 🤝 Приглашённый вами друг пополнил баланс: вам +{ $amount }. Баланс: { $balance }
command-history = История
command-video = Видео
command-cancel = Отменить
command-lang = Язык
error-generic = Что-то пошло не так. Попробуйте ещё раз чуть позже.
console-usage = Консоль REI: пишите текст или /команду; #N нажимает кнопку N; +photo ПУТЬ подпись — отправить фото.
console-result = 📁 Файл: { $path }
storage-full = 😔 Сейчас не могу принять файл: хранилище заполнено. Администраторы уже знают — попробуйте позже. Текстовые запросы работают.
sandbox-banner = 🧪 ПЕСОЧНИЦА — игровые деньги, ничего не списывается, провайдеры не вызываются.
sandbox-checkout-title = Оплата в песочнице
sandbox-checkout-body = Пополнение бота REI на { $amount }. Это песочница: деньги не списываются, баланс игровой.
sandbox-checkout-pay = Оплатить { $amount } (песочница)
sandbox-checkout-cancel = Отмена
sandbox-checkout-paid = Оплачено (песочница): { $amount } зачислено на баланс. Вернитесь в бот.
sandbox-checkout-cancelled = Платёж отменён. Вернитесь в бот.
sandbox-checkout-unknown = Такого платежа в песочнице нет.
sandbox-checkout-later = Платёж отмечен, но бот не смог зачислить его прямо сейчас: зачислит в течение минуты.
admin-model-line = { $model } — { $state }
admin-model-on = включена
admin-model-off = выключена
admin-model-switched = Видеомодель { $model }: { $state }. Действует везде через несколько секунд; уже показанные черновики сохраняют модель.
admin-model-unknown = { $model } — не видеомодель этого бота: список в /prices.
admin-model-last = Хотя бы одна видеомодель должна остаться включённой.
admin-topups-set = Суммы пополнения теперь: { $topups }. Действует везде через несколько секунд.
admin-broadcast-photo = 🖼 с присланным фото, текст — его подпись
admin-web-link = 🔐 Ваша ссылка для входа в веб-админку: работает один раз, { $minutes } минут. Не пересылайте её.
admin-web-open = Открыть веб-админку
admin-web-off = Веб-админка выключена (ADMIN_WEB=0).
