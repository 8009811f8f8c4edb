#!/usr/bin/env python3
"""Generate Earshot's bundled synthetic sample stream.

Writes NDJSON (one mention per line, Earshot ingest format) to stdout:

    python3 scripts/gen-sample.py > crates/earshot/sample/mentions.ndjson

With --stats, also prints per-category / brand / source / language counts to
stderr. Output is fully deterministic (fixed seed, stdlib only): running the
script twice yields byte-identical files.

Everything here is synthetic. The brands (Lumora, Brewtide, Parcelly), people,
handles and most domains are fictional; news / phishing links use reserved
`.example` domains.

Stream shape (~90 minutes starting 2026-11-23T09:00:00Z):
  * ~600 mentions of three fictional brands plus brand-less chatter,
    category mix ~30% praise, ~20% questions, ~25% complaints, ~10% neutral
    news/blog, ~8% spam, ~7% no brand at all;
  * a scripted incident: between minute 55 and minute 65, ~60 extra
    complaints about Parcelly (app down, outage, lost packages, lawsuit and
    data-breach rumours), some from verified 50k-900k follower accounts.
"""

import argparse
import collections
import datetime as dt
import json
import re
import sys
import random

SEED = 20261123
START = dt.datetime(2026, 11, 23, 9, 0, 0, tzinfo=dt.timezone.utc)
SPAN_SECONDS = 90 * 60
BURST_START = 55 * 60  # burst window: minutes 55..65
BURST_END = 65 * 60

# Total 600 = 540 background + 60 burst.
# complaints: 90 background + 60 burst = 150 (25%).
BACKGROUND_COUNTS = collections.OrderedDict([
    ("praise", 180),
    ("question", 120),
    ("complaint", 90),
    ("news", 60),
    ("spam", 48),
    ("offtopic", 42),
])
BURST_COUNT = 60
BURST_INFLUENCERS = 12

BRANDS = ["lumora", "brewtide", "parcelly"]
BRAND_RE = re.compile(r"lumora|brewtide|parcelly", re.IGNORECASE)

# Surface forms of each brand as they appear in free text (weight).
BRAND_FORMS = {
    "lumora": [("Lumora", 50), ("lumora", 20), ("LUMORA", 6), ("@Lumora", 12),
               ("#Lumora", 6), ("#lumora", 6)],
    "brewtide": [("Brewtide", 50), ("brewtide", 20), ("BREWTIDE", 6),
                 ("@Brewtide", 12), ("#Brewtide", 6), ("#brewtide", 6)],
    "parcelly": [("Parcelly", 50), ("parcelly", 20), ("PARCELLY", 6),
                 ("@Parcelly", 12), ("#Parcelly", 6), ("#parcelly", 6)],
}
BRAND_TAGS = {
    "lumora": [("#lumora", 6), ("#Lumora", 3), ("#LUMORA", 1)],
    "brewtide": [("#brewtide", 6), ("#Brewtide", 3), ("#BREWTIDE", 1)],
    "parcelly": [("#parcelly", 6), ("#Parcelly", 3), ("#PARCELLY", 1)],
}
LUMORA_PRODUCTS = ["Lumora Halo", "Lumora Strip"]
LUMORA_SHORT = {"Lumora Halo": ["Halo", "Halo", "Halo lamp"],
                "Lumora Strip": ["Strip", "Strip", "light strip"]}

TOPIC_TAGS = {
    "lumora": ["#smarthome", "#homedecor", "#lighting", "#IoT", "#cozy",
               "#homeoffice", "#setup", "#desksetup", "#HomeAutomation"],
    "brewtide": ["#coffee", "#coffeetime", "#pourover", "#espresso",
                 "#coffeelover", "#morningritual", "#specialtycoffee",
                 "#subscriptionbox"],
    "parcelly": ["#delivery", "#ecommerce", "#shipping", "#packages",
                 "#customerservice", "#logistics", "#fail"],
}
MOOD_TAGS = {
    "praise": ["#happycustomer", "#recommend", "#smallwins", "#worthit", "#love"],
    "complaint": ["#customerservice", "#fail", "#neveragain", "#disappointed",
                  "#badservice", "#refund"],
    "question": ["#help", "#askingforafriend", "#question"],
}

# ---------------------------------------------------------------------------
# Text pools. Slots: {brand} brand surface form, {product} full product name
# (contains the brand), {prod} short product name, {n}/{days}/{weeks}/{price}/
# {order}/{time}/{city}/{origin} small random fillers.
# ---------------------------------------------------------------------------

PRAISE = {
    "lumora": [
        "just set up my {product} and wow, the colours are unreal",
        "{product} + movie night = perfection",
        "the sunrise mode on the {product} actually gets me out of bed now",
        "been using {brand} lamps for {n} months, zero issues. setup took like 2 minutes",
        "ok the {strip} under my desk was the best {price} I spent this year",
        "shoutout to {brand} support, swapped my dead unit in {days} days no questions asked",
        "the new firmware made the {product} so much smoother, fades are buttery now",
        "the {brand} app is honestly the least annoying smart home app I've used",
        "got the {halo} for my kid's room and the night light mode is so gentle",
        "my living room finally looks like a pinterest board thanks to {brand}",
        "the warm white on the {halo} is SO good, none of that blue hospital LED look",
        "{product} worked with my voice assistant out of the box. no hub, no drama",
        "put two {strip}s behind the tv and my partner thinks I hired a designer",
        "bought a {product} on a whim and now I want one in every room",
        "the focus scene on my {product} is genuinely helping me work late without a headache",
        "{brand} lamps survived a move, a cat and a toddler. built like tanks",
        "love that the {product} keeps working locally when the internet is out",
        "three weeks with the {product}: still obsessed",
        "whoever designed the {halo} diffuser deserves a raise, zero hotspots",
        "the {product} is the first smart light my parents can actually use",
    ],
    "brewtide": [
        "this month's {brand} box is a banger, the {origin} tastes like blueberries",
        "{brand} roast dates are always within a week of delivery. you can taste it",
        "paused {brand} for my trip in 2 clicks, no dark patterns. respect",
        "my morning pour-over hits different since switching to {brand}",
        "{brand} sent a handwritten note with my box. small thing but it made my day",
        "the {origin} from {brand} is the best thing I've brewed all year",
        "gifted my dad a {brand} subscription and he texts me tasting notes now lol",
        "{brand} decaf that actually tastes like coffee?? didn't think it was possible",
        "{n} months of {brand} and not a single late box",
        "love that {brand} lets you pick grind size per bag. espresso for me, filter for my partner",
        "the {brand} packaging is compostable AND the beans are great. no notes",
        "new bag from {brand} today, the whole kitchen smells amazing",
        "{brand} customer service fixed a billing mistake in under an hour. rare these days",
        "switched from supermarket beans to {brand} and I can't go back",
        "the {brand} brew guide card that came with the {origin} actually improved my v60",
        "coffee snob friend tried my {brand} beans and asked where I get them. victory",
    ],
    "parcelly": [
        "the live map in {brand} is weirdly satisfying, watched my driver turn onto my street",
        "rescheduled a delivery in the {brand} app in 10 seconds. why can't everyone do this",
        "{brand} driver left my parcel exactly where I asked + sent a photo. perfect",
        "{brand} locker pickup is so handy, grabbed my package on the way to the gym",
        "got a refund from {brand} for a damaged box within a day. impressed",
        "the {brand} notifications are actually useful, not spam",
        "shoutout to the {brand} driver who waited while I ran down {n} flights of stairs",
        "{brand} delivered on a sunday before 9am?? witchcraft",
        "honestly {brand} has been more reliable than the postal service for me this year",
        "the 'leave with neighbour' option in {brand} saved my christmas shopping",
        "{brand} support chat answered in 2 minutes with a real human. wild",
        "tracking in {brand} said 10:42, it arrived at 10:41",
        "switched my shop's shipping to {brand} and customer complaints dropped a lot",
        "{brand} app redesign is clean, finally can see all my parcels on one screen",
    ],
}

QUESTION = {
    "lumora": [
        "does the {product} work with HomeKit or is it Google/Alexa only?",
        "can you cut the {strip} to size or does that void the warranty?",
        "how do I reset my {product}? it's stuck blinking blue",
        "anyone know if {brand} ships to Canada yet?",
        "is the {halo} bright enough to read by or is it more mood lighting?",
        "does {brand} have schedules that work without the cloud?",
        "{brand} vs Hue for a small apartment, worth it?",
        "how many {brand} {prod}s can you group in one room in the app?",
        "is there a way to sync the {product} with music from my pc?",
        "does the {product} remember its last colour after a power cut?",
        "anyone running {brand} lamps with Home Assistant? local API or cloud only?",
        "what's the max length of the {strip} before the colours go weird at the end?",
        "does {brand} do a student discount or is that just a rumour?",
        "can the {product} do a proper warm 2200K or is it more like 2700?",
    ],
    "brewtide": [
        "can I change my grind size mid-subscription with {brand}?",
        "does {brand} do decaf or only regular roasts?",
        "how do I pause my {brand} subscription while I'm travelling?",
        "is {brand} worth it vs just buying from a local roaster?",
        "anyone know when the next {brand} box ships? mine still says 'preparing'",
        "can you gift a {brand} subscription without creating an account for them?",
        "does {brand} ship to the EU or UK only?",
        "which {brand} plan is best for 2 people who drink ~3 cups a day?",
        "is the {origin} from {brand} better as espresso or filter?",
        "can I swap this month's {brand} roast for something less acidic?",
        "how long do {brand} beans stay fresh once opened?",
        "does {brand} use recyclable bags or do I need to cut the valve off?",
    ],
    "parcelly": [
        "how do I change the delivery address in {brand} after it's shipped?",
        "does {brand} deliver on sundays?",
        "why does {brand} say 'out for delivery' since {time}?",
        "can {brand} leave packages with a neighbour if I'm out?",
        "is {brand} available in Ireland yet?",
        "how do I add a safe place note in the {brand} app?",
        "does {brand} have a phone number or is it chat only?",
        "anyone know what 'held at depot' means in {brand}? been like that for 2 days",
        "can you get {brand} to redeliver to a locker instead?",
        "is there a {brand} business account for small shops?",
        "what time do {brand} drivers usually stop delivering?",
        "how do I link my {brand} account to more than one email?",
    ],
}

COMPLAINT = {
    "lumora": [
        "my {product} won't connect to wifi after the update",
        "{product} started flickering after {weeks} weeks",
        "asked {brand} for a refund {weeks} weeks ago, still nothing",
        "{brand} support never answers. this is my 4th email",
        "got charged twice for my {product} order, {order}",
        "half the LEDs on my {product} are dead already",
        "the {brand} app keeps logging me out every single day",
        "ordered a {product} {weeks} weeks ago and it still says 'processing'",
        "the {product} just turns itself on at 3am. haunted or broken?",
        "{brand} pushed a firmware update and now my scenes are gone",
        "adhesive on the {strip} gave up after {days} days, it's hanging off my shelf",
        "paid {price} for a {product} that drops off the network every evening",
        "{brand} warranty claim closed without a reply. great",
        "my {halo} arrived with a cracked diffuser and {brand} wants me to pay return shipping",
    ],
    "brewtide": [
        "{brand} charged me twice this month",
        "beans from {brand} arrived with a roast date from {weeks} weeks ago. that's not fresh",
        "{brand} box arrived crushed, beans everywhere in the mailbox",
        "cancelled {brand} last month and they still billed me",
        "{brand} support never answers, {days} days and counting",
        "{brand} delivery late AGAIN, {days} days this time",
        "ordered espresso roast, {brand} sent me decaf. at 7am that's a crime",
        "still waiting on a refund from {brand}, {order}",
        "the {brand} cancel button just loops back to 'are you sure?' forever",
        "{brand} changed my plan price without telling me",
        "skipped this month on {brand} and got charged anyway",
        "my {brand} bag was ground when I asked for whole bean. 2nd time",
    ],
    "parcelly": [
        "{brand} says delivered. package is nowhere",
        "{brand} driver didn't even knock, just left a 'sorry we missed you' card",
        "the {brand} app crashes every time I open tracking",
        "waiting {weeks} weeks for a refund on a lost {brand} package",
        "{brand} support chatbot just loops forever, no way to reach a human",
        "package {days} days late with {brand} and no updates",
        "{brand} left my parcel in the rain on the doorstep. soaked",
        "{brand} delivered my package to a house {n} streets away",
        "paid for next-day with {brand}, it's been {days} days",
        "{brand} marked it 'refused by recipient'. I never even saw a driver",
        "the {brand} tracking hasn't updated since {clock} yesterday",
        "{brand} charged me twice for a redelivery fee",
    ],
}

BURST = [
    "is {brand} down?? app won't load",
    "{brand} app down for anyone else? #ParcellyDown",
    "{brand} outage, can't track anything and my driver says their scanners are dead too",
    "lost my package and now the {brand} app is completely dead. great timing",
    "hearing rumours of a {brand} data breach, anyone confirm? changing my password just in case",
    "if the {brand} data breach is real that's my address and phone number out there",
    "someone on reddit says there's a class action lawsuit against {brand} coming",
    "{brand} status page says 'all systems operational' lol sure",
    "500 error on {brand} login. third time in 10 minutes",
    "lawsuit incoming? {brand} lost {n} of my packages this month and now the app is down",
    "{brand} website down, app down, support line just hangs up. what is going on",
    "my {brand} delivery vanished from the app entirely. did they lose EVERYTHING?",
    "is the {brand} outage why my parcel says 'exception' now?",
    "{brand} down during black friday week. incredible",
    "got a weird 'verify your {brand} account' email right as the app went down. breach??",
    "so {brand} is down AND my package is lost. cool cool cool",
    "anyone know if the {brand} data leak includes payment info? #ParcellyOutage",
    "{brand} just logged me into someone else's account?? that is NOT ok",
    "{brand} app shows tracking for a parcel that isn't mine. data breach confirmed imo",
    "three friends all say their {brand} packages are lost today. not a coincidence",
    "{brand} please say something, people are panicking about the breach rumours",
    "driver just told me {brand} systems have been down for an hour and nobody can scan",
    "if {brand} leaked my address I'm joining that lawsuit",
    "can't even file a lost package claim because the {brand} form errors out",
]
BURST_INFLUENCER = [
    "Seeing widespread reports of a {brand} outage affecting package tracking across multiple regions. Reached out to the company for comment.",
    "Getting a lot of DMs about {brand}. Unconfirmed reports of a possible data breach. Don't click links in 'delivery failed' texts today.",
    "{brand} outage update: app and website are returning errors for most users we've checked. No statement yet.",
    "If you're a {brand} customer: change your password and turn on 2FA. Breach rumours are unverified but cheap to be careful.",
    "Thread: what we know so far about today's {brand} outage and the data breach rumours (not much, honestly) 🧵",
    "Lawyers in my mentions already talking class action over {brand}. Let's maybe find out what actually happened first.",
    "{brand} has been down for ~40 minutes. Lost-package claims are also failing. This is a bad look during peak season.",
    "Multiple {brand} drivers tell me their handheld scanners are offline. Deliveries are effectively paused in some areas.",
    "I've used {brand} for my shop for 2 years and today I have 30 customers asking where their orders are. Not great.",
    "Still no word from {brand} on the outage. Silence during an incident is the worst possible comms strategy.",
    "PSA for small sellers: {brand} tracking links are erroring for everyone right now, it's not just your store.",
    "Security folks: there is NO confirmed {brand} breach yet, but phishing texts using the outage are already circulating.",
]

NEWS = {
    "lumora": [
        "{brand} launches {product} 2 with Matter support and a brighter warm-white range",
        "Review: the {product} is the budget smart light to beat this winter",
        "{brand} opens local API for its Halo and Strip lamps in developer preview",
        "{brand} recalls a small batch of {product} power adapters, says no injuries reported",
        "Hands-on with the {product}: easy setup, great diffusion, app needs work",
        "{brand} partners with furniture retailers to bundle {product} lamps",
    ],
    "brewtide": [
        "{brand} raises Series B to expand its coffee subscription to Europe",
        "{brand} switches to fully compostable packaging across all plans",
        "Coffee subscriptions compared: {brand}, local roasters and supermarket beans",
        "{brand} adds a 'roaster's choice' tier featuring rotating single origins",
        "Interview: {brand}'s head roaster on sourcing the {origin}",
        "{brand} to pause shipments on Dec 24-26, orders resume after the holidays",
    ],
    "parcelly": [
        "{brand} partners with regional couriers to offer same-day delivery in {city}",
        "{brand} hires new CTO from logistics rival",
        "{brand} rolls out parcel lockers at {n}00 train stations",
        "Delivery apps ranked: how {brand} stacks up on tracking accuracy",
        "{brand} reports record peak-season volumes ahead of Black Friday",
        "{brand} adds carbon-neutral delivery option in {city}",
    ],
}
NEWS_SOCIAL = [
    "interesting read on how {brand} handles peak season: {link}",
    "{brand} in the news today: {link}",
    "via {pub}: {headline} {link}",
    "new post on the blog comparing {brand} with the alternatives: {link}",
    "{headline} ({link})",
    "TIL: {headline}",
]
HN_COMMENT = [
    "{brand} wrote up their migration off a monolith, fairly honest post: {link}",
    "Their engineering blog post on idempotent billing is worth a read, {brand} got bitten by double charges before: {link}",
    "Not affiliated, but {brand} documented their local API properly, which is rare for consumer IoT.",
    "{brand} is one of the few companies in that space publishing postmortems. Link: {link}",
]

SPAM_BRAND = [
    "🎁 GIVEAWAY 🎁 win a {product}!!! follow + RT + tag 3 friends {link} #giveaway",
    "{brand} is giving away 1 YEAR of free coffee!!! click here to claim 👉 {link}",
    "Your {brand} package is on hold. Pay the $1.99 redelivery fee here: {link}",
    "🔥 {brand} 90% OFF today only 🔥 {link} {link}",
    "we're giving away 50 {product} lamps 💡 just like + follow + click {link}",
    "FREE {brand} subscription for the first 100 people 👉 {link} 👈",
    "{brand} customers: claim your compensation for late deliveries now {link}",
    "click here for {brand} gift cards, limited stock!!! {link}",
]
SPAM_NOBRAND = [
    "🚀 FREE CRYPTO 🚀 claim 500 USDT now ➡️ {link}",
    "follow for follow 🔁 I follow back 100% #f4f #followback #followforfollow",
    "make $3,000/week from home, DM me 'INFO' 💸 {link}",
    "💰 free crypto airdrop, connect wallet here {link} {link}",
    "f4f? drop a 👋 and I'll follow back instantly #followback",
    "click here to see who viewed your profile 👀 {link}",
    "🎉 you've been selected! claim your prize {link}",
]
SPAM_LINKS_GENERIC = [
    "https://free-usdt-claim.example/c/9f3k2",
    "http://bit-prizes.example.net/win?ref=2281",
    "https://deals-today.example/x7Qp",
]
SPAM_LINKS_BRAND = {  # look-alike phishing domains
    "lumora": "https://lumora-giveaway.example.net/claim",
    "brewtide": "https://brewtide-free.example.org/year",
    "parcelly": "https://parcelly-redelivery.example.com/pay",
}

OFFTOPIC = [
    "coffee this morning hits different ☕",
    "my smart lamp is fighting me again. it is 7am, why are you purple",
    "package delivered to the wrong house again, thanks random courier",
    "low tide walk + home brewing session = perfect sunday",
    "does anyone actually read terms of service? asking for me",
    "monday meetings should be illegal",
    "finally finished that book everyone kept recommending. it was fine",
    "my parcel finally came after 2 weeks, was a phone case. worth the wait I guess",
    "new keyboard day ⌨️",
    "anyone else's wifi terrible today or just me",
    "hot take: oat milk is overrated",
    "the aurora last night was unreal, no filter 🌌",
    "trying to fix a bug for 3 hours and it was a missing comma",
    "why do all smart home apps need a separate account",
    "cold brew season is over, back to hot coffee",
    "shipping costs more than the thing I'm buying. classic",
    "podcast recommendations? long commute this week",
    "rain again. of course it's raining",
    "who decided black friday should last a month",
    "the lumen rating on these cheap bulbs is a lie",
    "good morning to everyone except my alarm clock",
    "setting up a home server this weekend, wish me luck",
    "the courier left a card saying they tried to deliver. I was home all day",
    "bought a 'smart' kettle and it needs a firmware update before I can boil water",
    "my cat has claimed the new desk lamp as a heat source",
    "third coffee and it's not even 11",
    "is it just me or are subscription boxes everywhere now",
    "the neighbour's doorbell camera has seen more of my life than I have",
    "just want to say the barista at my local place is a legend",
    "WHY is every app asking me to rate it today",
    "reorganised my whole desk setup instead of working. productive day",
    "anyone tried those sunrise alarm clocks? worth it?",
    "the tide was so high today the beach basically disappeared",
    "switched to a french press and I'm never going back",
    "delivery driver just waved at my dog, made both our days",
    "my router needs a reboot more often than I do",
    "tracking number says 'in transit' for a week, where is it, the moon?",
    "new blog post is up, finally wrote about my homelab",
    "cyber monday deals are just friday deals wearing a hat",
    "can someone explain why LED strips always die at the corners",
    "accidentally ordered 5kg of rice. meal prep era begins",
    "the smell of fresh coffee beans should be bottled",
    "woke up before my alarm for once and I feel unstoppable",
    "spent the morning untangling christmas lights. it's november",
]
OFFTOPIC_HN = [
    "The real problem with most smart home ecosystems is that they all want to be the hub.",
    "Every delivery app I've used has the same race condition: 'delivered' fires before the photo uploads.",
    "Subscription businesses live and die on churn; the cancel flow tells you everything about a company.",
    "I'd pay extra for any IoT device that works fully offline and documents its protocol.",
    "Surprised nobody mentioned idempotency keys yet. Double charges are almost always a retry bug.",
    "Status pages that are updated by hand are basically marketing pages.",
]

REPLY = {
    "complaint": [
        "same here, my {brand} order is stuck too",
        "+1, {brand} support ghosted me as well",
        "happened to me last week with {brand}. took forever to sort",
        "you're not alone, {brand} did the exact same thing to me",
        "same. {brand} really needs to fix this",
    ],
    "praise": [
        "agreed, {brand} has been great for me too",
        "this. {brand} is underrated",
        "can confirm, been happy with {brand} for months",
        "same experience with {brand}, zero complaints",
    ],
    "burst": [
        "same, {brand} won't even load for me",
        "{brand} still down here too",
        "yep, {brand} logged me out and won't let me back in",
        "can confirm, {brand} is down in my area too",
        "mine says my {brand} package doesn't exist anymore???",
    ],
}

L, B, P = "lumora", "brewtide", "parcelly"
# (brand, template) per language and category; every cell covers every brand.
NON_ENGLISH = {
    "es": {
        "praise": [(L, "Me encanta mi {product}, la luz cálida es perfecta ✨"),
                   (B, "El café de {brand} de este mes está buenísimo ☕"),
                   (P, "{brand} me entregó el paquete antes de lo previsto, genial")],
        "question": [(L, "¿Alguien sabe si la {product} funciona con Alexa?"),
                     (B, "¿{brand} hace envíos a España?"),
                     (P, "¿Cómo cambio la dirección de entrega en {brand}?")],
        "complaint": [(B, "{brand} me cobró dos veces este mes 😡"),
                      (L, "Mi {product} parpadea desde la actualización y soporte no responde"),
                      (P, "{brand} dice que entregó el paquete pero no hay nada")],
        "burst": [(P, "¿{brand} está caído? No carga la app"),
                  (P, "Rumores de filtración de datos en {brand}, ¿alguien sabe algo?")],
    },
    "de": {
        "praise": [(L, "Die {product} sieht im Wohnzimmer einfach mega aus"),
                   (B, "Der Kaffee von {brand} ist echt top, jeden Monat was Neues"),
                   (P, "{brand} Fahrer hat sogar geklingelt und gewartet. Danke!")],
        "question": [(L, "Kann man den {strip} kürzen?"),
                     (L, "Liefert {brand} auch nach Österreich?"),
                     (B, "Kann ich bei {brand} das Abo für einen Monat pausieren?"),
                     (P, "Liefert {brand} auch sonntags?")],
        "complaint": [(L, "Meine {product} flackert seit dem Update. Support antwortet nicht."),
                      (P, "Paket laut {brand} zugestellt, aber nichts da."),
                      (B, "{brand} hat mir zweimal abgebucht, super.")],
        "burst": [(P, "{brand} App geht nicht, ist das bei euch auch so?"),
                  (P, "{brand} komplett down und mein Paket ist verschwunden")],
    },
    "fr": {
        "praise": [(L, "Ma {product} est superbe dans le salon ✨"),
                   (B, "Le café {brand} de ce mois est incroyable"),
                   (P, "Livraison {brand} nickel, en avance en plus")],
        "question": [(P, "Est-ce que {brand} livre le dimanche ?"),
                     (L, "La {product} marche avec Google Home ?"),
                     (B, "On peut offrir un abonnement {brand} ?")],
        "complaint": [(B, "{brand} m'a facturé deux fois, quelqu'un d'autre ?"),
                      (P, "Colis perdu par {brand}, et le service client ne répond jamais"),
                      (L, "Ma {product} ne se connecte plus au wifi depuis la mise à jour")],
        "burst": [(P, "L'appli {brand} est en panne ?"),
                  (P, "{brand} en panne et mon colis a disparu, génial")],
    },
}


OPENERS = {
    "any": ["", "", "", "", "", "ok so ", "honestly ", "not gonna lie, ", "ngl ",
            "update: ", "so ", "lol ", "y'all ", "real talk: ", "hmm, "],
    "praise": ["ok wow, ", "10/10: ", "no notes: ", "small win: ", "happy to report ",
               "can confirm ", "obsessed: "],
    "question": ["quick q: ", "genuine question: ", "help pls: ", "hey, ",
                 "does anyone know: ", "random question but ", "dumb question, "],
    "complaint": ["ugh. ", "unbelievable. ", "seriously? ", "yet again: ",
                  "not impressed: ", "welp. ", "so annoyed. ", "fun times: ", "PSA: "],
}
CLOSERS = {
    "any": ["", "", "", "", " lol", " tbh", " fr"],
    "praise": [" 🙌", " ✨", " 10/10 would recommend", " love it", " 😍", " 💡",
               " highly recommend", " 👏"],
    "question": [" thanks in advance!", " 🙏", " any tips appreciated", " ??",
                 " asking before I buy", " cheers"],
    "complaint": [" never again.", " do better.", " 🙄", " 😡", " thanks for nothing",
                  " anyone else?", " cancelling.", " 🤦", " unacceptable", " smh"],
}

FIRST = ["sam", "jen", "alex", "maria", "tom", "priya", "chris", "leah", "omar", "kate",
         "dan", "nina", "ben", "zoe", "raj", "ella", "mike", "hana", "luis", "tara",
         "josh", "amy", "kofi", "ines", "paul", "mei", "noah", "sara", "will", "ava",
         "ravi", "lucy", "theo", "jade", "femi", "rosa", "jack", "ada", "yusuf", "ivy"]
LAST = ["k", "m", "lee", "park", "smith", "nguyen", "okafor", "rossi", "patel", "kim",
        "brown", "garcia", "walsh", "chen", "novak", "silva", "haas", "dubois", "reid", "ali"]
HANDLE_SUFFIX = ["", "", "_", "codes", "makes", "_art", "xo", "writes", "irl",
                 "_dev", "coffee", "home", "99", "2k", "_", "official"]
NE_NAMES = {
    "es": [("lucia_gm", "Lucía García"), ("javi_ruiz", "Javi Ruiz"), ("marta.sol", "Marta Sol"),
           ("pablo_mx", "Pablo Hernández"), ("carmen_vg", "Carmen V.")],
    "de": [("jonas_b", "Jonas Becker"), ("lena.schmidt", "Lena Schmidt"),
           ("fabi_k", "Fabian K."), ("mia_wolf", "Mia Wolf"), ("tobi_hh", "Tobi aus HH")],
    "fr": [("camille_d", "Camille Durand"), ("hugo.lrt", "Hugo L."),
           ("chloe_mrt", "Chloé Martin"), ("lucas_b", "Lucas Bernard"), ("manon_p", "Manon P.")],
}
INFLUENCERS = [
    ("danawhitfield", "Dana Whitfield", "tech reporter"),
    ("gadgetgrace", "Grace | Gadget Reviews", None),
    ("consumerwatch", "Consumer Watch", None),
    ("thedeliverydesk", "The Delivery Desk", None),
    ("marcusreviews", "Marcus Oyelaran", None),
    ("priya_on_tech", "Priya Raman", None),
    ("shopowner_sam", "Sam Carter 🛍️", None),
    ("infosec_jules", "Jules Moreau", "security researcher"),
    ("retailpulse", "Retail Pulse", None),
    ("kaytechtalks", "Kay Tech Talks", None),
    ("lawandbytes", "Law & Bytes", None),
    ("theparcelreport", "The Parcel Report", None),
]
SPAM_HANDLES = [
    ("crypto_gains_4421", "💰 Crypto Gains 💰"), ("giveaway_hub_22", "Giveaway Hub 🎁"),
    ("free_stuff_daily", "Free Stuff Daily"), ("f4f_queen_xo", "f4f queen ✨"),
    ("deals4u_official", "Deals 4 U"), ("winbig2026", "WIN BIG 🏆"),
    ("airdrop_alerts77", "Airdrop Alerts"), ("lucky_promo_bot", "Lucky Promo"),
]
PUBLICATIONS = [
    ("news.example.com", "newsdesk", "Example News Desk"),
    ("techdigest.example.net", "techdigest", "TechDigest Staff"),
    ("dailygrind.example.org", "dailygrind", "The Daily Grind"),
    ("logisticsweekly.example.com", "logisticsweekly", "Logistics Weekly"),
    ("homegadgets.example.org", "homegadgets", "Home Gadgets Blog"),
]

INSTANCES = {
    "mastodon": ["mastodon.social", "mastodon.social", "fosstodon.org", "hachyderm.io",
                 "mastodon.online", "mas.to"],
    "bluesky": ["bsky.social"],
    "x": ["x.com"],
    "hackernews": ["news.ycombinator.com"],
}
SUBREDDITS = {
    "lumora": ["r/smarthome", "r/smarthome", "r/homeautomation", "r/HomeDecorating"],
    "brewtide": ["r/Coffee", "r/Coffee", "r/pourover", "r/espresso"],
    "parcelly": ["r/mildlyinfuriating", "r/delivery", "r/CasualUK", "r/Scams"],
    None: ["r/AskReddit", "r/CasualConversation", "r/mildlyinfuriating", "r/homeautomation"],
}
FORUMS = {
    "lumora": ["forum.homeautomation.example", "community.smartlight.example.com"],
    "brewtide": ["coffeegeek.example.org", "forum.homebarista.example"],
    "parcelly": ["forum.sellers.example.com", "community.moneytalk.example"],
    None: ["forum.example.com", "community.moneytalk.example"],
}

SOURCE_MIX = {
    "praise": [("x", 30), ("bluesky", 20), ("mastodon", 20), ("reddit", 15),
               ("forum", 10), ("hackernews", 5)],
    "question": [("reddit", 25), ("x", 25), ("forum", 20), ("mastodon", 15), ("bluesky", 15)],
    "complaint": [("x", 40), ("reddit", 20), ("bluesky", 15), ("mastodon", 10), ("forum", 15)],
    "news": [("rss", 60), ("hackernews", 15), ("x", 13), ("mastodon", 12)],
    "spam": [("x", 50), ("bluesky", 15), ("reddit", 10), ("mastodon", 10), ("forum", 15)],
    "offtopic": [("x", 30), ("bluesky", 20), ("mastodon", 20), ("reddit", 20), ("hackernews", 10)],
    "burst": [("x", 50), ("bluesky", 18), ("mastodon", 12), ("reddit", 15), ("forum", 5)],
}
BARE_CLOSERS = {"lol", "tbh", "fr", "smh"}
MAX_LEN = {"x": 280, "bluesky": 300, "mastodon": 500}

MISSPELL = {"received": "recieved", "definitely": "definately", "the": "teh",
            "your": "ur", "you": "u", "because": "bc", "really": "realy",
            "separate": "seperate", "tomorrow": "tommorow", "weird": "wierd",
            "until": "untill", "address": "adress", "package": "pakage",
            "though": "tho", "please": "pls", "thanks": "thx"}
ORIGINS = ["Ethiopia Guji", "Colombia Huila", "Kenya Nyeri", "Guatemala Huehuetenango",
           "Rwanda Nyamasheke", "Brazil Cerrado", "Costa Rica Tarrazú"]
CITIES = ["Leeds", "Manchester", "Bristol", "Dublin", "Glasgow", "Lyon", "Rotterdam"]


class Gen:
    def __init__(self, seed):
        self.r = random.Random(seed)
        self.authors = []
        self.handles = set()
        self.fixed = {}

    # -- small helpers ------------------------------------------------------
    def wchoice(self, pairs):
        items = [p[0] for p in pairs]
        weights = [p[1] for p in pairs]
        return self.r.choices(items, weights=weights, k=1)[0]

    def chance(self, p):
        return self.r.random() < p

    def filler(self, key):
        r = self.r
        if key == "n":
            return str(r.randint(2, 6))
        if key == "days":
            return str(r.randint(3, 14))
        if key == "weeks":
            return str(r.randint(2, 6))
        if key == "price":
            return r.choice(["$39", "$45", "£29", "€35", "$59", "£49"])
        if key == "order":
            return "order #%d" % r.randint(4000000, 4999999)
        if key == "time":
            return r.choice(["6am", "7am", "8:30", "yesterday morning", "monday"])
        if key == "clock":
            return r.choice(["6am", "7:15", "8:30", "9am", "5pm", "noon"])
        if key == "origin":
            return r.choice(ORIGINS)
        if key == "city":
            return r.choice(CITIES)
        raise KeyError(key)

    # -- authors ------------------------------------------------------------
    def new_handle(self, base):
        h = base
        i = 2
        while h in self.handles:
            h = "%s%d" % (base, i)
            i += 1
        self.handles.add(h)
        return h

    def regular_followers(self):
        if self.chance(0.015):  # rare mid-size account outside the burst
            return self.r.randint(8000, 45000)
        f = int(self.r.lognormvariate(5.6, 1.1))
        return max(10, min(5000, f))

    def make_author(self):
        r = self.r
        first, last = r.choice(FIRST), r.choice(LAST)
        style = r.randint(0, 4)
        if style == 0:
            base = first + "_" + last
        elif style == 1:
            base = first + last + r.choice(HANDLE_SUFFIX)
        elif style == 2:
            base = first + r.choice(HANDLE_SUFFIX) + str(r.randint(1, 99))
        elif style == 3:
            base = first[0] + last + r.choice(HANDLE_SUFFIX)
        else:
            base = first + "." + last
        handle = self.new_handle(base.strip("_."))
        disp = r.choice([
            "%s %s" % (first.capitalize(), last.capitalize()),
            first.capitalize(),
            "%s %s." % (first.capitalize(), last[0].upper()),
            first + " " + r.choice(["☕", "💡", "🌿", "✨", "🐈", "📦", "🎧"]),
            "%s %s" % (first.capitalize(), last.capitalize()),
        ])
        followers = self.regular_followers()
        verified = followers > 20000 and self.chance(0.6) or self.chance(0.01)
        a = {"handle": "@" + handle, "name": disp, "followers": followers,
             "verified": verified}
        self.authors.append(a)
        return a

    def pick_author(self):
        # Reuse existing authors ~30% of the time so a few people post repeatedly.
        if self.authors and self.chance(0.3):
            return dict(self.r.choice(self.authors))
        return dict(self.make_author())

    def fixed_author(self, handle, name, followers_fn, verified=False):
        """Accounts that recur (spam bots, publications, non-English posters)
        keep the same profile every time they appear."""
        if handle not in self.fixed:
            self.fixed[handle] = {"handle": "@" + handle, "name": name,
                                  "followers": followers_fn(), "verified": verified}
        return dict(self.fixed[handle])

    def ne_author(self, lang):
        h, n = self.r.choice(NE_NAMES[lang])
        self.handles.add(h)
        return self.fixed_author(h, n, self.regular_followers)

    # -- text ---------------------------------------------------------------
    def brand_form(self, brand, formal=False, plain=False):
        if formal:
            return {"lumora": "Lumora", "brewtide": "Brewtide", "parcelly": "Parcelly"}[brand]
        forms = BRAND_FORMS[brand]
        if plain:  # no @/# forms (e.g. the post already @-addresses the brand)
            forms = [f for f in forms if f[0][0] not in "@#"]
        return self.wchoice(forms)

    def fill(self, template, brand, formal=False, extra=None, plain=False):
        product = self.r.choice(LUMORA_PRODUCTS)
        vals = {}

        def sub(m):
            key = m.group(1)
            if extra and key in extra:
                v = extra[key]
                return v() if callable(v) else v
            if key == "brand":
                return self.brand_form(brand, formal, plain)
            if key == "product":
                return product
            if key == "prod":
                return self.r.choice(LUMORA_SHORT[product])
            if key == "strip":
                return "Lumora Strip"
            if key == "halo":
                return "Lumora Halo"
            return self.filler(key)
        return re.sub(r"\{(\w+)\}", sub, template)

    def typo(self, text):
        words = text.split(" ")
        idx = [i for i, w in enumerate(words)
               if w.isalpha() and w.islower() and len(w) >= 3 and not BRAND_RE.search(w)]
        if not idx:
            return text
        i = self.r.choice(idx)
        w = words[i]
        if w in MISSPELL and self.chance(0.7):
            words[i] = MISSPELL[w]
        elif len(w) >= 5:
            k = self.r.randint(1, len(w) - 3)
            op = self.r.randint(0, 2)
            if op == 0:
                w = w[:k] + w[k + 1] + w[k] + w[k + 2:]
            elif op == 1:
                w = w[:k] + w[k + 1:]
            else:
                w = w[:k] + w[k] + w[k:]
            words[i] = w
        return " ".join(words)

    def decorate(self, core, cat, brand, kind, author_handle=None, reply=False):
        """Wrap a core sentence with openers/closers/hashtags/mentions + noise."""
        r = self.r
        text = core
        casual = kind in ("x", "bluesky", "mastodon", "reddit", "forum")
        if casual and not reply and self.chance(0.45):
            op = r.choice(OPENERS["any"] + OPENERS.get(cat, []))
            if op:
                text = op + text
        if casual and self.chance(0.5):
            closer = r.choice(CLOSERS["any"] + CLOSERS.get(cat, []))
            if (closer[1:2].isalpha() and closer.strip() not in BARE_CLOSERS
                    and text[-1:] not in ".!?)"):
                closer = r.choice([".", ".", ",", " -", "!"]) + closer
            text += closer
        # Capitalise sometimes; leave lowercase other times.
        if self.chance(0.45) and text[:1].isalpha() and text[:1].islower():
            text = text[0].upper() + text[1:]
        if casual and cat in ("complaint", "burst", "praise") and self.chance(0.1):
            text = re.sub(r"[.!?]*$", "", text.rstrip()) + r.choice(["!!!", "!!", "!!!!"])
        # @mention a friend.
        if kind in ("x", "bluesky", "mastodon") and self.authors and self.chance(0.12):
            friend = r.choice(self.authors)["handle"]
            if friend == author_handle:
                pass
            elif self.chance(0.5):
                text = "%s %s" % (friend, text)
            else:
                text = "%s cc %s" % (text, friend)
        # Hashtags.
        if kind in ("x", "bluesky", "mastodon") and brand and self.chance(0.35):
            tags = []
            if self.chance(0.7):
                tags.append(self.wchoice(BRAND_TAGS[brand]))
            if self.chance(0.6):
                tags.append(r.choice(TOPIC_TAGS[brand]))
            if cat in MOOD_TAGS and self.chance(0.4):
                tags.append(r.choice(MOOD_TAGS[cat]))
            if tags:
                text += " " + " ".join(tags)
        # Emoji sprinkle.
        if casual and self.chance(0.15):
            text += " " + r.choice({"praise": ["😊", "🥰", "💯", "☺️", "🔥"],
                                    "complaint": ["😤", "😩", "💀", "😒", "🫠"],
                                    "burst": ["😤", "😩", "💀", "🫠", "😬"],
                                    "question": ["🤔", "👀", "😅"]}.get(cat, ["🙂", "😅", "🙃"]))
        # Noise: shouting, all-lowercase, typos.
        if casual and cat in ("complaint", "burst") and self.chance(0.08):
            text = text.upper()
        elif casual and cat == "praise" and self.chance(0.04):
            text = text.upper()
        elif casual and self.chance(0.12):
            text = text.lower()
        if casual and self.chance(0.16):
            text = self.typo(text)
            if self.chance(0.3):
                text = self.typo(text)
        return text

    def extra_detail(self, cat, brand):
        r = self.r
        details = {
            "complaint": [
                "Tried reinstalling, resetting, the works. Nothing.",
                "Been a customer since 2024 and this is the first time I'm this annoyed.",
                "If anyone from the company reads this sub, please DM me.",
                "Opened a ticket, got an auto-reply, then silence.",
                "Posting here because I genuinely don't know where else to go.",
                "Edit: still nothing as of this morning.",
            ],
            "question": [
                "Couldn't find anything in their FAQ.",
                "Searched the sub first, the old threads are out of date.",
                "Any experience appreciated!",
                "Edit: thanks for the replies so far.",
            ],
            "praise": [
                "Not sponsored, just genuinely happy.",
                "Had my doubts after reading some reviews but it's been solid.",
                "Edit: a few people asked, yes I'd buy again.",
                "Posting because people usually only write when something goes wrong.",
            ],
            "burst": [
                "Edit: seems like it's everyone, not just me.",
                "Their status page is no help.",
                "Anyone got an official statement link?",
            ],
        }.get(cat)
        return r.choice(details) if details else ""


def join_detail(r, text, detail):
    """Append a follow-up sentence (reddit/forum posts run longer)."""
    if r.random() < 0.4:
        return text + "\n\n" + detail
    if text[-1:].isalnum():
        text += "."
    return text + " " + detail


def iso(seconds):
    return (START + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def slugify(text, limit=6):
    words = re.findall(r"[a-z0-9]+", text.lower())
    return "-".join(words[:limit]) or "post"


def build(seed=SEED):
    g = Gen(seed)
    r = g.r

    # 1. Plan: (second offset, category, brand) for every mention.
    burst_secs = r.sample(range(BURST_START, BURST_END), BURST_COUNT)
    burst_set = set(burst_secs)
    bg_total = sum(BACKGROUND_COUNTS.values())
    bg_pool = [s for s in range(0, SPAN_SECONDS) if s not in burst_set]
    bg_secs = r.sample(bg_pool, bg_total)
    cats = []
    for cat, n in BACKGROUND_COUNTS.items():
        cats.extend([cat] * n)
    r.shuffle(cats)
    # Spread brands evenly within each category (spam: ~60% brand giveaways /
    # phishing, the rest generic crypto / follow-for-follow).
    brand_queue = {}
    for cat, n in BACKGROUND_COUNTS.items():
        if cat == "offtopic":
            q = [None] * n
        elif cat == "spam":
            nb = n * 6 // 10
            q = [BRANDS[k % 3] for k in range(nb)] + [None] * (n - nb)
        else:
            q = [BRANDS[k % 3] for k in range(n)]
        r.shuffle(q)
        brand_queue[cat] = q
    plan = []
    for s, cat in zip(bg_secs, cats):
        plan.append([s, cat, brand_queue[cat].pop(), False])
    influencer_idx = set(r.sample(range(BURST_COUNT), BURST_INFLUENCERS))
    for i, s in enumerate(burst_secs):
        plan.append([s, "burst", "parcelly", i in influencer_idx])
    plan.sort(key=lambda p: p[0])

    # Pick which background posts are non-English (about 4%).
    ne_slots = {}
    eligible = [i for i, p in enumerate(plan) if p[1] in ("praise", "question", "complaint")]
    for i in r.sample(eligible, 18):
        ne_slots[i] = r.choice(["es", "de", "fr"])
    burst_idx = [i for i, p in enumerate(plan) if p[1] == "burst" and not p[3]]
    for i in r.sample(burst_idx, 5):
        ne_slots[i] = r.choice(["es", "de", "fr"])

    influencers = list(INFLUENCERS)
    r.shuffle(influencers)
    g.influencer_lines = list(BURST_INFLUENCER)
    r.shuffle(g.influencer_lines)

    records = []
    meta = []  # (category, brand, is_burst, is_reply)
    roots_by_key = collections.defaultdict(list)  # (kind, instance, brand, cat) -> [idx]
    seen_text = set()

    for i, (sec, cat, brand, is_inf) in enumerate(plan):
        native_id = "sample-%06d" % (i + 1)
        lang = ne_slots.get(i, "en")

        # Source.
        kind = g.wchoice(SOURCE_MIX[cat])
        if lang != "en" and kind in ("hackernews", "rss"):
            kind = "mastodon"
        if is_inf:
            kind = "x" if r.random() < 0.75 else "bluesky"
        if kind == "reddit":
            instance = r.choice(SUBREDDITS[brand])
        elif kind == "forum":
            instance = r.choice(FORUMS[brand])
        elif kind == "rss":
            pub = r.choice(PUBLICATIONS)
            instance = pub[0]
        elif kind == "mastodon" and lang == "de":
            instance = "chaos.social"
        else:
            instance = r.choice(INSTANCES[kind])

        # Author.
        if cat == "spam":
            h, n = r.choice(SPAM_HANDLES)
            author = g.fixed_author(h, n, (lambda: r.randint(10, 900)) if "f4f" not in h
                                    else (lambda: r.randint(3000, 5000)))
        elif kind == "rss":
            author = g.fixed_author(pub[1], pub[2], lambda: r.randint(1500, 40000))
        elif is_inf:
            h, n, _ = influencers.pop()
            author = {"handle": "@" + h, "name": n,
                      "followers": int(r.uniform(50000, 900000)), "verified": True}
        elif lang != "en":
            author = g.ne_author(lang)
        else:
            author = g.pick_author()

        # Reply threading: agreeing replies to earlier complaint/praise/burst roots.
        parent_id = None
        conversation_id = None
        reply_cat = {"complaint": "complaint", "praise": "praise", "burst": "burst"}.get(cat)
        if reply_cat and lang == "en" and not is_inf and kind != "rss":
            key = (kind, instance, brand, reply_cat)
            cands = [j for j in roots_by_key[key] if sec - plan[j][0] <= 40 * 60]
            p_reply = 0.45 if cat == "burst" else 0.18
            if cands and r.random() < p_reply:
                # Prefer replying to influencer posts during the burst.
                inf_c = [j for j in cands if plan[j][3]]
                j = r.choice(inf_c) if inf_c and r.random() < 0.7 else r.choice(cands)
                parent = records[j]
                if parent["author"]["handle"] != author["handle"]:
                    parent_id = parent["native_id"]
                    conversation_id = parent["conversation_id"] or parent["native_id"]

        # Text.
        for attempt in range(50):
            text = make_text(g, cat, brand, kind, lang, is_inf, parent_id is not None,
                             instance, author["handle"])
            limit = MAX_LEN.get(kind)
            if (limit is None or len(text) <= limit) and (text not in seen_text or cat == "spam"):
                break
        seen_text.add(text)

        # Lang for non-English posts; brand detection for ne templates.
        url = make_url(r, kind, instance, author, native_id, text, i)

        # Engagement.
        f = author["followers"]
        if cat == "spam":
            likes, reposts, replies = r.randint(0, 2), r.randint(0, 1), 0
        else:
            rate = r.lognormvariate(-4.2, 0.9)
            if cat == "burst":
                rate *= 3
            likes = int(f * rate)
            reposts = int(likes * r.uniform(0.0, 0.35))
            replies = int(likes * r.uniform(0.02, 0.25)) + (1 if cat == "question" and r.random() < 0.6 else 0)
        has_media = r.random() < {"praise": 0.22, "spam": 0.3, "news": 0.4, "complaint": 0.15,
                                  "burst": 0.12}.get(cat, 0.06)

        rec = collections.OrderedDict()
        rec["native_id"] = native_id
        rec["source"] = {"kind": kind, "instance": instance}
        rec["url"] = url
        rec["author"] = author
        rec["text"] = text
        rec["lang"] = lang
        rec["created_at"] = iso(sec)
        rec["engagement"] = {"likes": likes, "reposts": reposts, "replies": replies}
        rec["parent_id"] = parent_id
        rec["conversation_id"] = conversation_id
        rec["has_media"] = has_media
        records.append(rec)
        meta.append((cat, brand, cat == "burst", parent_id is not None))
        if reply_cat and parent_id is None and lang == "en":
            roots_by_key[(kind, instance, brand, reply_cat)].append(i)
    return records, meta


def make_text(g, cat, brand, kind, lang, is_inf, is_reply, instance, handle):
    r = g.r
    if lang != "en":
        fit = [t for b, t in NON_ENGLISH[lang][cat] if b == brand]
        return g.fill(r.choice(fit), brand)

    if cat == "burst":
        if is_inf:
            t = g.influencer_lines.pop()  # each scripted line used once
            return g.fill(t, brand, formal=r.random() < 0.7)
        if is_reply:
            core = g.fill(r.choice(REPLY["burst"]), brand)
        else:
            core = g.fill(r.choice(BURST), brand)
        text = g.decorate(core, "burst", brand, kind, handle, reply=is_reply)
        if kind == "reddit" and r.random() < 0.5:
            text = join_detail(r, text, g.extra_detail("burst", brand))
        if kind in ("x", "bluesky", "mastodon") and "#Parcelly" not in text and r.random() < 0.3:
            text += " " + r.choice(["#ParcellyDown", "#parcellydown", "#ParcellyOutage", "#parcelly"])
        return text

    if cat in ("praise", "question", "complaint"):
        if is_reply:
            core = g.fill(r.choice(REPLY[cat]), brand)
        else:
            pool = {"praise": PRAISE, "question": QUESTION, "complaint": COMPLAINT}[cat][brand]
            core = g.fill(r.choice(pool), brand)
            # Occasionally address the brand's account / support handle directly.
            if kind in ("x", "bluesky", "mastodon") and r.random() < 0.12:
                support = cat != "praise" and r.random() < 0.5
                addr = {"lumora": "@Lumora", "brewtide": "@Brewtide",
                        "parcelly": "@ParcellySupport" if support else "@Parcelly"}[brand]
                t = r.choice([t for t in pool if not t.startswith("{brand}")])
                core = addr + " " + g.fill(t, brand, plain=True)
        text = g.decorate(core, cat, brand, kind, handle, reply=is_reply)
        if kind in ("reddit", "forum") and r.random() < 0.55:
            text = join_detail(r, text, g.extra_detail(cat, brand))
        return text

    if cat == "news":
        headline = g.fill(r.choice(NEWS[brand]), brand, formal=True)
        if kind == "rss":
            summary = r.choice([
                "",
                " — here's what it means for existing customers.",
                ". The company confirmed the details in a statement on Monday.",
                ": our first impressions.",
                ". Analysts say the move is overdue.",
            ])
            return headline + summary
        link = "https://%s/%s" % (r.choice(PUBLICATIONS)[0], slugify(headline))
        if kind == "hackernews":
            return g.fill(r.choice(HN_COMMENT), brand, formal=True, extra={"link": link})
        pub = r.choice(PUBLICATIONS)[2]
        t = r.choice(NEWS_SOCIAL)
        text = g.fill(t, brand, formal=r.random() < 0.6,
                      extra={"link": link, "headline": headline, "pub": pub})
        if not BRAND_RE.search(text):
            text += " " + g.wchoice(BRAND_TAGS[brand])
        return text

    if cat == "spam":
        # A handful of links reused across many spam posts, on purpose.
        links = SPAM_LINKS_GENERIC + ([SPAM_LINKS_BRAND[brand]] * 3 if brand else [])
        link = lambda: r.choice(links)  # noqa: E731
        if brand:
            pool = [t for t in SPAM_BRAND if brand == "lumora" or "{product}" not in t]
            text = g.fill(r.choice(pool), brand, extra={"link": link})
            tags = r.choice(["", " " + g.wchoice(BRAND_TAGS[brand]),
                             " #giveaway #win #free", " #contest " + g.wchoice(BRAND_TAGS[brand])])
            text += tags
        else:
            text = g.fill(r.choice(SPAM_NOBRAND), None, extra={"link": link})
        if r.random() < 0.25:
            text += " " + link()
        return text.strip()

    if cat == "offtopic":
        if kind == "hackernews":
            return r.choice(OFFTOPIC_HN)
        text = r.choice(OFFTOPIC)
        return g.decorate(text, "offtopic", None, kind, handle)

    raise ValueError(cat)


def make_url(r, kind, instance, author, native_id, text, i):
    handle = author["handle"].lstrip("@")
    if kind == "mastodon":
        return "https://%s/@%s/%d" % (instance, handle, 113500000000000000 + i * 7919 + r.randint(0, 999))
    if kind == "bluesky":
        alphabet = "abcdefghijklmnopqrstuvwxyz234567"
        rkey = "3l" + "".join(r.choice(alphabet) for _ in range(11))
        return "https://bsky.app/profile/%s.bsky.social/post/%s" % (handle.replace("_", "-"), rkey)
    if kind == "x":
        return "https://x.com/%s/status/%d" % (handle, 1860000000000000000 + i * 104729 + r.randint(0, 99999))
    if kind == "reddit":
        b36 = "0123456789abcdefghijklmnopqrstuvwxyz"
        pid = "1h" + "".join(r.choice(b36) for _ in range(5))
        return "https://www.reddit.com/%s/comments/%s/%s/" % (instance, pid, slugify(text).replace("-", "_"))
    if kind == "hackernews":
        return "https://news.ycombinator.com/item?id=%d" % (42200000 + i * 37 + r.randint(0, 30))
    if kind == "rss":
        return "https://%s/2026/11/23/%s" % (instance, slugify(text, 8))
    if kind == "forum":
        return "https://%s/t/%s/%d" % (instance, slugify(text), 1000 + i)
    raise ValueError(kind)


def validate(lines, records, meta):
    ids = set()
    prev = None
    for line, rec, (cat, brand, _, _) in zip(lines, records, meta):
        obj = json.loads(line)
        assert obj == json.loads(json.dumps(rec)), "round-trip mismatch"
        assert obj["native_id"] not in ids, obj["native_id"]
        ids.add(obj["native_id"])
        assert prev is None or obj["created_at"] > prev, "timestamps must increase"
        prev = obj["created_at"]
        mentions_brand = bool(BRAND_RE.search(obj["text"]))
        if cat == "offtopic":
            assert not mentions_brand, obj
        elif cat != "spam":
            assert mentions_brand, obj
            assert brand in obj["text"].lower(), obj
        if obj["source"]["kind"] in MAX_LEN:
            assert len(obj["text"]) <= MAX_LEN[obj["source"]["kind"]], obj
        if obj["parent_id"] is not None:
            assert obj["parent_id"] in ids and obj["parent_id"] != obj["native_id"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stats", action="store_true",
                    help="print per-category counts to stderr")
    args = ap.parse_args()

    records, meta = build()
    lines = [json.dumps(rec, ensure_ascii=False, separators=(", ", ": ")) for rec in records]
    validate(lines, records, meta)

    out = sys.stdout
    if hasattr(out, "reconfigure"):
        out.reconfigure(encoding="utf-8", newline="\n")
    for line in lines:
        out.write(line + "\n")
    out.flush()

    if args.stats:
        def show(title, counter):
            print("%s:" % title, file=sys.stderr)
            for k, v in sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0]))):
                print("  %-22s %4d" % (k, v), file=sys.stderr)
        cats = collections.Counter()
        for cat, _, _, _ in meta:
            cats["complaint" if cat == "burst" else cat] += 1
        print("lines: %d (all parsed with json.loads)" % len(lines), file=sys.stderr)
        show("categories", cats)
        show("background categories + burst",
             collections.Counter(c for c, _, _, _ in meta))
        show("brand (planned)", collections.Counter(str(b) for _, b, _, _ in meta))
        show("source.kind", collections.Counter(rec["source"]["kind"] for rec in records))
        show("lang", collections.Counter(rec["lang"] for rec in records))
        print("replies (parent_id set): %d" % sum(1 for m in meta if m[3]), file=sys.stderr)
        burst = [rec for rec, m in zip(records, meta) if m[2]]
        print("burst: %d posts %s .. %s, %d verified >=50k followers" % (
            len(burst), burst[0]["created_at"], burst[-1]["created_at"],
            sum(1 for b in burst if b["author"]["verified"] and b["author"]["followers"] >= 50000)),
            file=sys.stderr)
        print("span: %s .. %s" % (records[0]["created_at"], records[-1]["created_at"]),
              file=sys.stderr)


if __name__ == "__main__":
    main()
