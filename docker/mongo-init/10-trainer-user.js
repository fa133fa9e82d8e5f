// Creates the trainer's MongoDB user: readWrite on the Weight database only (database
// `Weight`, collection `TrainingData`, see fishweight/models/store.py). The mongo image
// runs this once, when it initialises an empty data volume, after creating the root
// user; the user name comes from MONGO_TRAINER_USERNAME (docker/.env), the password
// from the compose secret mongo_trainer_password (a file, never the environment).
const fs = require("fs");

const user = process.env.MONGO_TRAINER_USERNAME;
const password = fs.readFileSync("/run/secrets/mongo_trainer_password", "utf8").trim();
if (!user || !password) {
  throw new Error("MONGO_TRAINER_USERNAME and the mongo_trainer_password secret are required");
}
db.getSiblingDB("admin").createUser({
  user: user,
  pwd: password,
  roles: [{ role: "readWrite", db: "Weight" }],
});
print(`created MongoDB user ${user} (readWrite on Weight)`);
