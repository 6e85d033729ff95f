-- How a call's summary was made: `llm` (the bot's language model, from the transcript),
-- `extractive` (drawn from the record when no model could serve) or `given` (came with the
-- record). NULL for calls stored before summaries were told apart.
ALTER TABLE calls ADD COLUMN summary_kind TEXT;
