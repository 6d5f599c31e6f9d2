declare module "*.css";
declare const PDF_WORKER_URL: string;
